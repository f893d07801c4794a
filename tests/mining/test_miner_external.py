"""``cheesecoin mine``: argument errors, the core loop against fakes, and real processes."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from typing import Any, List, Tuple

import pytest
import pytest_twisted
from procs import Proc, free_port, http_json, wait_until
from twisted.internet import task
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport

from cheesecoin.cli import main as cli
from cheesecoin.cli.mine import Console, ExternalMiner, format_rate, parse_member, parse_work
from cheesecoin.core.errors import BadMessage
from cheesecoin.core.pow import NONCE_LIMIT, search_nonce
from cheesecoin.mining.port import MinerPortFactory
from cheesecoin.mining.templates import Job
from tests.mining.test_mining import MINER, alive, make_node

CLI = [sys.executable, "-c", "import sys; from cheesecoin.cli.main import main; sys.exit(main())"]


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:24333", ("127.0.0.1", 24333)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:65535", ("::1", 65535)),
        # the URL forms the other commands' --member take are accepted too
        ("http://127.0.0.1:24333", ("127.0.0.1", 24333)),
        ("tcp://localhost:5/", ("localhost", 5)),
        ("HTTP://[::1]:7", ("::1", 7)),
    ],
)
def test_parse_member(text: str, expected: Tuple[str, int]) -> None:
    assert parse_member(text) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--member", "nope"],
        ["--member", "host:0"],
        ["--member", "host:65536"],
        ["--member", "host:port"],
        ["--member", ":24333"],
        ["--member", "::1:24333"],
        ["--member", "[zz]:24333"],
        ["--member", "a b:24333"],
        ["--member", "host:\u00b2"],
        ["--member", "127.0.0.1:24333", "--processes", "-1"],
        ["--member", "127.0.0.1:24333", "--processes", "two"],
        [],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    args: List[str], capsys: pytest.CaptureFixture
) -> None:
    try:
        code = cli.main(["mine"] + args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # argparse adds its usage line
    assert err.strip().splitlines()[-1].startswith("cheesecoin")


def test_format_rate() -> None:
    assert format_rate(0) == "0 H/s"
    assert format_rate(2500) == "2.50 kH/s"
    assert format_rate(3_210_000) == "3.21 MH/s"


# -- the core loop, with fakes ---------------------------------------------------------------


def test_parse_work() -> None:
    job = parse_work(
        {"type": "WORK", "job": 5, "prefix": "ab:", "bits": 12, "cheese": {"sequence_number": 3}}
    )
    assert (job.job_id, job.prefix, job.bits, job.height) == (5, "ab:", 12, 3)
    for bad in (
        {"job": True, "prefix": "a:", "bits": 1, "cheese": {}},
        {"job": 1, "prefix": "a", "bits": 1, "cheese": {}},
        {"job": 1, "prefix": "é:", "bits": 1, "cheese": {}},
        {"job": 1, "prefix": "a:", "bits": 0, "cheese": {}},
        {"job": 1, "prefix": "a:", "bits": 161, "cheese": {}},
        {"job": 1, "prefix": "a:", "bits": 1, "cheese": []},
        {"prefix": "a:", "bits": 1, "cheese": {}},
    ):
        with pytest.raises(BadMessage):
            parse_work(dict(bad, type="WORK"))


class FakeSearcher:
    def __init__(self) -> None:
        self.searches: List[Tuple[Any, int]] = []
        self.paused = 0
        self.shut = False

    def search(self, job: Job, start: int = 0) -> None:
        self.searches.append((job.job_id, start))

    def pause(self) -> None:
        self.paused += 1

    def shutdown(self) -> Any:
        from twisted.internet import defer

        self.shut = True
        return defer.succeed(None)


def fake_miner(tty: bool = False) -> Tuple[ExternalMiner, FakeSearcher, io.StringIO, task.Clock]:
    out = io.StringIO()
    searcher = FakeSearcher()
    clock = task.Clock()
    miner = ExternalMiner("127.0.0.1", 24333, 2, clock, Console(out, tty=tty), searcher=searcher)
    return miner, searcher, out, clock


def connect(miner: ExternalMiner) -> Tuple[Any, StringTransport]:
    proto = miner.factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_work_search_submit_reply_and_disconnect() -> None:
    miner, searcher, out, _ = fake_miner()
    proto, transport = connect(miner)
    work = {
        "type": "WORK",
        "job": 7,
        "prefix": "x" * 40 + ":1:2:8:" + "y" * 40 + ":",
        "bits": 8,
        "cheese": {"parent_smell": "p1", "sequence_number": 1},
    }
    proto.dataReceived(json.dumps(work).encode() + b"\n")
    assert [job for job, _ in searcher.searches] == [7]
    nonce, smell = search_nonce(work["prefix"], 8, 0, NONCE_LIMIT)
    miner._found(miner.job, nonce, smell)
    assert [json.loads(line) for line in transport.value().splitlines()] == [
        {"type": "SUBMIT", "job": 7, "nonce": nonce}
    ]
    assert searcher.searches[-1] == (7, nonce + 1)  # keeps going until new work arrives
    proto.dataReceived(
        json.dumps({"type": "SUBMIT_REPLY", "job": 7, "accepted": True, "smell": smell}).encode()
        + b"\n"
    )
    proto.dataReceived(b'{"type":"ERROR","code":"stale","message":"job 7 is old"}\n')
    proto.dataReceived(
        json.dumps(dict(work, job=8)).encode() + b"\n"
    )  # same parent: no new "Mining" line
    assert miner.found == 1 and miner.accepted_count == 1
    assert searcher.searches[-1][0] == 8
    proto.connectionLost(None)
    assert searcher.paused == 1 and miner.proto is None and miner.job is None
    miner._found(Job(8, {}, "p:", 8), 1, "00")  # found after the member went away: not sent
    assert miner.found == 1
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "Connected to the member at 127.0.0.1:24333"
    assert lines[1] == "Mining cheese 1 at 8 bits (job 7)"
    assert lines[2] == f"Found cheese 1 {smell} (nonce {nonce})"
    assert lines[3:] == [
        f"Accepted: cheese {smell}",
        "Refused (stale): job 7 is old",
        "Lost the member at 127.0.0.1:24333; reconnecting",
    ]


def test_bad_work_gets_an_error_and_does_not_stop_the_miner() -> None:
    miner, searcher, _, _ = fake_miner()
    proto, transport = connect(miner)
    proto.dataReceived(b'{"type":"WORK","job":1,"bits":8}\n')
    (reply,) = [json.loads(line) for line in transport.value().splitlines()]
    assert reply["type"] == "ERROR" and reply["code"] == "bad-message"
    assert searcher.searches == [] and not transport.disconnecting


def test_status_line_only_rewritten_on_a_terminal() -> None:
    miner, _, out, clock = fake_miner(tty=True)
    assert miner.status_every == 1.0
    miner.show_status()
    miner.console.line("Found it")
    miner.show_status()
    assert out.getvalue() == (
        "\r\033[K0 H/s | waiting for work | found 0, accepted 0"
        "\r\033[KFound it\n"
        "\r\033[K0 H/s | waiting for work | found 0, accepted 0"
    )
    plain, _, plain_out, _ = fake_miner(tty=False)
    assert plain.status_every == 10.0
    plain.show_status()
    assert plain_out.getvalue() == "0 H/s | waiting for work | found 0, accepted 0\n"


def test_stop_ends_the_searcher_and_says_so() -> None:
    miner, searcher, out, clock = fake_miner()
    miner.start = lambda: None  # type: ignore[method-assign]
    d = miner.stop()
    assert searcher.shut and d.called
    assert out.getvalue().splitlines()[-1] == "Stopped: found 0, accepted 0"


# -- real processes -------------------------------------------------------------------------------


def children(pid: int) -> List[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


@pytest_twisted.inlineCallbacks
def test_cheesecoin_mine_against_a_miner_port_that_comes_up_late(tmp_path):
    """Reconnect with backoff, mine for the node, stop on SIGTERM with no traceback and no
    child left."""
    from twisted.internet import reactor

    node = make_node(bits=12)
    port = free_port()
    out_path, err_path = tmp_path / "miner.out", tmp_path / "miner.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            CLI + ["mine", "--member", f"127.0.0.1:{port}", "--processes", "2"],
            stdout=out,
            stderr=err,
        )
    listening = None
    try:
        yield deferLater(reactor, 1.0, lambda: None)  # the member is not up yet
        listening = reactor.listenTCP(
            port, MinerPortFactory(node, MINER, clock=reactor), interface="127.0.0.1"
        )
        deadline = time.monotonic() + 30
        while node.stack.height < 3 and time.monotonic() < deadline and proc.poll() is None:
            yield deferLater(reactor, 0.1, lambda: None)
        assert node.stack.height >= 3, out_path.read_text()
        assert node.stack.get_by_height(1)["unit_of_information"]["miner"] == MINER
        workers = children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
        assert proc.returncode == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if listening is not None:
            yield listening.stopListening()
    text = out_path.read_text()
    assert "Cannot reach the member" in text and "Connected to the member" in text
    assert "Accepted: cheese" in text and text.splitlines()[-1].startswith("Stopped: found ")
    assert err_path.read_text() == ""


@pytest.mark.slow
def test_member_mines_and_serves_an_external_miner(procs, tmp_path) -> None:
    """A real member with --mine and `cheesecoin mine` on its miner port; SIGTERM leaves no
    worker behind."""
    net = subprocess.run(
        CLI + ["network", "new", "--name", "minenet", "--bits", "16", "--retarget-interval", "0"],
        capture_output=True,
        check=True,
    ).stdout
    network_file = tmp_path / "network.json"
    network_file.write_bytes(net)
    api, miner_port = free_port(), free_port()
    options = [
        "--network",
        str(network_file),
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
        "--interface",
        "127.0.0.1",
        "--api-port",
        str(api),
        "--miner-port",
        str(miner_port),
        "--mine",
        "--mining-workers",
        "2",
        "--miner-address",
        MINER,
    ]
    member = Proc.twistd("cheesemember", options, str(tmp_path / "member"), name="member")
    procs.append(member)
    member.wait_for("HTTP API on", timeout=30)
    status = wait_until(
        lambda: (s := http_json(f"http://127.0.0.1:{api}/api/status")) and s["height"] >= 2 and s,
        timeout=30,
        what="the member mining",
    )
    assert status["mining"] is True and status["hashrate"] > 0
    workers = children(member.popen.pid)
    assert len(workers) == 2
    external = Proc(
        CLI + ["mine", "--member", f"127.0.0.1:{miner_port}", "--processes", "1"],
        str(tmp_path / "ext"),
        "ext",
    )
    procs.append(external)
    external.wait_for("Accepted: cheese", timeout=60)
    assert member.stop() in (0, -signal.SIGTERM)  # twistd re-raises the signal it stopped on
    assert not any(alive(pid) for pid in workers)
    assert "Traceback" not in member.output()
    external.wait_for("Lost the member", timeout=10)
    assert external.stop() == 0
    assert "Traceback" not in external.output()
    assert "Stopped: found" in external.output()


def test_the_miner_says_which_address_the_rewards_go_to() -> None:
    miner, _, out, _ = fake_miner()
    proto, _ = connect(miner)
    payee = "ab" * 32
    work = {
        "type": "WORK",
        "job": 1,
        "prefix": "x" * 40 + ":1:2:8:" + "y" * 40 + ":",
        "bits": 8,
        "cheese": {
            "parent_smell": "p1",
            "sequence_number": 1,
            "unit_of_information": {"miner": payee, "transactions": []},
        },
    }
    proto.dataReceived(json.dumps(work).encode() + b"\n")
    proto.dataReceived(json.dumps(dict(work, job=2)).encode() + b"\n")  # same payee: said once
    lines = out.getvalue().splitlines()
    assert lines.count(f"Rewards go to {payee} (the member's miner address)") == 1
