"""``twistd cheesemember`` options, and the tracker link (on a fake transport and clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List

import pytest
from procs import run_member
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.member.options import Options
from cheesecoin.p2p.manager import PeerManager
from cheesecoin.p2p.tracker_link import TrackerLink, _TrackerFactory
from cheesecoin.testing.chain import make_network

NETWORK = make_network(name="taptest", bits=1)


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults(tmp_path) -> None:
    options = parse()
    assert (options["port"], options["api-port"], options["miner-port"]) == (24331, 24332, 24333)
    assert options["interface"] == "0.0.0.0" and options["api-interface"] == "127.0.0.1"
    assert options["peers"] == 8 and options["max-inbound"] == 32 and options["mining-workers"] == 0
    assert not options["mine"] and options["tracker"] is None and options["connect"] == []
    assert options["features"] == "all"
    assert options["network-object"].name == "cheesecoin"
    assert options["data-dir"].endswith("cheesecoin-data")


def test_connect_repeats_and_tracker_parses(tmp_path) -> None:
    net = tmp_path / "net.json"
    net.write_text(json.dumps(NETWORK.blue_cheese))
    options = parse(
        "--tracker",
        "tracker.example:24330",
        "--connect",
        "127.0.0.1:5000",
        "--connect",
        "[::1]:5001",
        "--network",
        str(net),
        "--mine",
        "--miner-address",
        "ab" * 32,
        "--host",
        "me.example",
    )
    assert options["tracker"] == ("tracker.example", 24330)
    assert options["connect"] == [("127.0.0.1", 5000), ("::1", 5001)]
    assert options["network-object"].smell == NETWORK.smell
    assert options["mine"] and options["miner-address"] == "ab" * 32


@pytest.mark.parametrize(
    "args, words",
    [
        (["--port", "99999"], "--port"),
        (["--api-port", "x"], "--api-port"),
        (["--tracker", "nohost"], "--tracker"),
        (["--tracker", "host:0"], "--tracker"),
        (["--connect", "h:70000"], "--connect"),
        (["--miner-address", "xyz"], "--miner-address"),
        (["--interface", "not-an-ip"], "--interface"),
        (["--peers", "-1"], "--peers"),
        (["--network", "/nonexistent/net.json"], "cannot read network file"),
        (["--mine", "--no-mine"], "contradict"),
        (["--features", "compact,teleport"], "--features"),
        (["--features", "some"], "--features"),
        (["--features", ","], "--features"),
    ],
)
def test_bad_options_are_one_clear_usage_error(args: List[str], words: str) -> None:
    with pytest.raises(usage.UsageError) as e:
        parse(*args)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "features, listed",
    [
        ("all", ["headers", "compact", "mempool", "inv", "compact-modes", "tls"]),
        ("rev2", ["headers", "compact", "mempool"]),
        ("headers,inv", ["headers", "inv"]),
        ("none", None),
    ],
)
def test_features_none_makes_a_member_of_before_section_5_1(
    tmp_path, features: str, listed
) -> None:
    """--features: all of sections 5.1 and 5.2, rev2 (5.1 only), names, or none (a HELLO
    without features, so peers use version-1 relay and sync with it)."""
    from twisted.internet.testing import MemoryReactorClock

    from cheesecoin.member.tap import makeService

    top = makeService(
        parse(
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "0",
            "--api-port",
            "0",
            "--miner-port",
            "0",
            "--features",
            features,
        ),
        reactor=MemoryReactorClock(),
    )
    try:
        assert top.manager.hello_message().get("features") == listed
    finally:
        top.startService()
        top.stopService()


def test_invalid_network_file(tmp_path) -> None:
    bad = dict(NETWORK.blue_cheese, nonce=NETWORK.blue_cheese["nonce"] + 1)
    for name, text in [("broken.json", "{not json"), ("bad-pow.json", json.dumps(bad))]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(usage.UsageError):
            parse("--network", str(path))


def test_twistd_reports_a_foreign_data_dir_in_one_line(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "stack.sqlite3").write_bytes(b"this is not a database at all")
    result = run_member(tmp_path, data)
    assert result.returncode != 0
    assert "not an SQLite database" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text", ["{not json", '{"cheesecoin_wallet": 1}', ""])
def test_twistd_reports_a_corrupt_member_wallet_in_one_line(tmp_path, text: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wallet.json").write_text(text)
    result = run_member(tmp_path, data)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    [line] = [ln for ln in result.stderr.splitlines() if "wallet" in ln]
    assert line.startswith("cheesemember: the member's wallet:") and "--miner-address" in line


# -- the tracker link -------------------------------------------------------------------------


def test_tracker_link_registers_pings_and_feeds_peers() -> None:
    clock = Clock()
    dialed: list = []
    manager = PeerManager(
        MemberNode(CheeseStack(NETWORK)),
        reactor=clock,
        target_peers=2,
        dialer=lambda host, port, factory: dialed.append((host, port)) or Deferred(),
    )
    manager.listen_port = 7000
    link = TrackerLink(
        manager, "127.0.0.1", 24330, advertised_host="me.example", reactor=clock, endpoint=object()
    )
    proto = _TrackerFactory(link).buildProtocol(IPv4Address("TCP", "127.0.0.1", 24330))
    transport = StringTransport()
    proto.makeConnection(transport)
    assert json.loads(transport.value()) == {"type": "REGISTER", "port": 7000, "host": "me.example"}
    transport.clear()
    proto.dataReceived(
        b'{"type":"PEERS","peers":[{"host":"10.0.0.1","port":1},{"host":"10.0.0.2","port":2},{"bad":1}]}\n'
    )
    assert sorted(dialed) == [("10.0.0.1", 1), ("10.0.0.2", 2)]
    clock.advance(30)
    assert json.loads(transport.value()) == {"type": "PING"}
    transport.clear()
    assert link.request_peers()
    assert json.loads(transport.value()) == {"type": "GET_PEERS"}
    proto.dataReceived(b'{"type":"ERROR","code":"busy","message":"full"}\n')
    proto.connectionLost(None)
    assert link.protocol is None and not link.request_peers()
    clock.advance(60)  # no PING after the connection is gone


def test_the_store_is_closed_only_after_every_other_part_stopped():
    from twisted.application.service import Service
    from twisted.internet.defer import Deferred

    from cheesecoin.member.lifecycle import MemberService as _MemberService

    order = []

    class Slow(Service):
        def __init__(self):
            self.stopped = Deferred()

        def stopService(self):
            Service.stopService(self)
            order.append("port stopping")
            return self.stopped

    class Last(Service):
        def stopService(self):
            Service.stopService(self)
            order.append("store closed")

    top = _MemberService()
    top.shutdown = Last()
    top.shutdown.setServiceParent(top)
    slow = Slow()
    slow.setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert order == ["port stopping"]
    slow.stopped.callback(None)
    assert order == ["port stopping", "store closed"]
    assert done.called


def test_an_unreachable_tracker_is_named_with_the_retry_delay() -> None:
    from twisted.internet.defer import fail
    from twisted.internet.error import ConnectionRefusedError
    from twisted.logger import formatEvent, globalLogPublisher

    class Refusing:
        def connect(self, factory):
            return fail(ConnectionRefusedError("refused"))

    clock = Clock()
    manager = PeerManager(
        MemberNode(CheeseStack(NETWORK)), reactor=clock, dialer=lambda h, p, f: Deferred()
    )
    link = TrackerLink(manager, "tracker.example", 24330, reactor=clock, endpoint=Refusing())
    seen: List[str] = []

    def observer(event: dict) -> None:
        seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        link.service.startService()
        for _ in range(10):
            clock.advance(1.0)  # the first retries come after a few seconds
        link.service.stopService()
    finally:
        globalLogPublisher.removeObserver(observer)
    ours = [
        line
        for line in seen
        if line.startswith("Cannot reach the tracker at tracker.example:24330, retrying in ")
    ]
    assert len(ours) == 1 and ours[0].endswith(" s)")  # once, however many retries (section 8)
    assert not [line for line in seen if "Scheduling retry" in line]


def test_the_reindex_hint_comes_only_where_a_reindex_can_help(tmp_path) -> None:
    # Another network's stack: use another data directory, not --reindex.
    from cheesecoin.storage.sqlite import open_stack

    data = tmp_path / "other-net"
    open_stack(str(data), make_network(name="elsewhere", bits=1)).close()
    result = run_member(tmp_path, data)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert (
        "holds the stack of network" in line
        and "another data directory" in line
        and "--reindex" not in line
    )


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes anywhere: an unwritable directory cannot be made as root"
)
def test_no_reindex_hint_for_a_data_dir_we_may_not_write(tmp_path) -> None:
    data = tmp_path / "locked"
    data.mkdir()
    data.chmod(0o500)
    try:
        result = run_member(tmp_path, data)
    finally:
        data.chmod(0o700)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--reindex" not in result.stderr


@pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="needs /proc (a directory nobody may create files in)"
)
def test_no_reindex_hint_for_a_database_we_may_not_write(tmp_path) -> None:
    """Even as root (CI) nobody may create a file in /proc: the same 'cannot
    open the database' that --reindex cannot mend."""
    result = run_member(tmp_path, "/proc/self")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--reindex" not in result.stderr


@pytest.mark.parametrize("plugin", ["cheesemember", "cheesetracker"])
def test_a_bad_option_is_said_first_and_last_not_after_the_usage(tmp_path, plugin: str) -> None:
    twistd = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
    done = subprocess.run(
        [sys.executable, "-c", twistd, "-n", "--pidfile=", plugin, "--port", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    first = done.stderr.splitlines()[0]
    assert first == f"twistd {plugin}: error: --port must be an integer from 0 to 65535, not 'x'"
    assert (
        done.stdout.strip()
        .splitlines()[-1]
        .endswith("--port must be an integer from 0 to 65535, not 'x'")
    )
