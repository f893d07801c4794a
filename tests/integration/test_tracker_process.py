"""The real ``twistd -n cheesetracker`` in a subprocess, spoken to over TCP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from procs import Proc, free_port

# twistd itself, as docs/protocol.md section 8 launches it (`python -m twisted` is
# `twist`, which has no -n or --pidfile).
TWISTD = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
]
READY = "Tracker waiting for new connection."


def twistd_tracker(*options: str) -> list:
    return TWISTD + ["-n", "--pidfile=", "--logfile=-", "cheesetracker", *options]


class Client:
    """A blocking line client."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def ask(self, **msg) -> dict:
        self.send(json.dumps(msg).encode() + b"\n")
        return self.recv()

    def at_eof(self) -> bool:
        return self.sock.recv(65536) == b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tracker(tmp_path: Path, procs: list) -> Proc:
    port = free_port()
    proc = Proc(
        twistd_tracker("--port", str(port), "--interface", "127.0.0.1"), str(tmp_path), "tracker"
    )
    procs.append(proc)
    proc.port = port
    proc.wait_for(READY)
    return proc


def peers(reply: dict) -> list:
    assert reply["type"] == "PEERS", reply
    found = [(p["host"], p["port"]) for p in reply["peers"]]
    assert len(found) == len(set(found)) <= 10, found
    return found


def test_tracker_process(tracker: Proc, tmp_path: Path) -> None:
    assert f"Tracker listening on 127.0.0.1:{tracker.port}" in tracker.output()
    assert tracker.output().count(READY) == 1
    members = [Client(tracker.port) for _ in range(15)]
    registered = set()
    for i, member in enumerate(members):
        me = ("127.0.0.1", 30000 + i)
        got = peers(member.ask(type="REGISTER", port=30000 + i, id=i))
        assert me not in got
        assert set(got) <= registered
        assert len(got) == min(i, 10)
        registered.add(me)
    log = tracker.output()
    assert "Registered member 127.0.0.1:30000 (1 active)" in log
    assert "Registered member 127.0.0.1:30014 (15 active)" in log
    for i, member in enumerate(members):
        reply = member.ask(type="GET_PEERS", id=f"g{i}")
        assert reply["id"] == f"g{i}"
        got = peers(reply)
        assert len(got) == 10 and ("127.0.0.1", 30000 + i) not in got and set(got) <= registered
        assert member.ask(type="PING") == {"type": "PONG"}

    # UNREGISTER: OK, and nobody is told about it any more.
    assert members[0].ask(type="UNREGISTER", id="bye") == {"type": "OK", "id": "bye"}
    registered.discard(("127.0.0.1", 30000))
    # A disconnect is seen by the others.
    members[1].close()
    registered.discard(("127.0.0.1", 30001))
    tracker.wait_for("Removed member 127.0.0.1:30001 (13 active): disconnected")
    for _ in range(20):
        got = peers(members[2].ask(type="GET_PEERS"))
        assert len(got) == 10 and set(got) <= registered - {("127.0.0.1", 30002)}

    # Bad input gets ERRORs with the id; 10 errors close that connection only.
    rude = Client(tracker.port)
    assert rude.ask(type="REGISTER", port=1.5, id=7)["code"] == "bad-message"
    error = rude.ask(type="WHAT", id=8)
    assert (error["type"], error["code"], error["id"]) == ("ERROR", "unknown-type", 8)
    rude.send(b"nope\n" * 8)
    assert [rude.recv()["code"] for _ in range(8)] == ["bad-json"] * 8
    assert rude.at_eof()
    assert len(peers(members[3].ask(type="GET_PEERS"))) == 10

    for member in members[2:]:
        member.close()
    tracker.wait_for("(0 active): disconnected")

    # twistd shuts down cleanly, then re-raises the signal to exit "killed by SIGTERM".
    assert tracker.stop() in (0, -signal.SIGTERM)
    assert "Server Shut Down." in tracker.output()
    assert "Traceback" not in tracker.output()
    assert not (tmp_path / "twistd.pid").exists()


def run_twistd(tmp_path: Path, *options: str) -> str:
    """Run a tracker that must fail to start; its output."""
    result = subprocess.run(
        twistd_tracker(*options), cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    return output


def test_bad_option_is_one_clear_error(tmp_path: Path) -> None:
    output = run_twistd(tmp_path, "--max-members", "none")
    assert "--max-members must be an integer of at least 1, not 'none'" in output


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        output = run_twistd(tmp_path, "--interface", "127.0.0.1", "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in output


def test_squatting_and_address_spellings_against_the_real_tracker(tracker: Proc) -> None:
    owner = Client(tracker.port, source="127.0.0.2")
    assert owner.ask(type="REGISTER", port=24331)["type"] == "PEERS"  # listed as 127.0.0.2:24331
    squatter = Client(tracker.port, source="127.0.0.3")
    refused = squatter.ask(type="REGISTER", host="127.0.0.2", port=24331, id=1)
    assert (refused["type"], refused["code"], refused["id"]) == ("ERROR", "busy", 1)
    for spelling in ("127.1", "0x7f000002", "2130706434", "127.000.000.002"):
        error = squatter.ask(type="REGISTER", host=spelling, port=24331)
        assert error["code"] == "bad-message", spelling
    squatter.close()  # its disconnect delists nobody
    asker = Client(tracker.port, source="127.0.0.4")
    assert asker.ask(type="GET_PEERS")["peers"] == [{"host": "127.0.0.2", "port": 24331}]
    assert owner.ask(type="PING")["type"] == "PONG"


def test_three_hundred_members_on_one_host_all_reach_the_tracker(tracker: Proc) -> None:
    clients = [
        Client(tracker.port) for _ in range(300)
    ]  # more than --max-per-ip's 256: loopback is exempt
    try:
        for i, client in enumerate(clients):
            assert client.ask(type="REGISTER", port=30000 + i)["type"] == "PEERS"
    finally:
        for client in clients:
            client.close()


def test_the_tracker_serves_its_metrics(tmp_path: Path, procs: list) -> None:
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    port, metrics_port = free_port(), free_port()
    proc = Proc(
        twistd_tracker(
            "--port",
            str(port),
            "--interface",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
            "--max-per-ip",
            "2",
        ),
        str(tmp_path),
        "tracker",
    )
    procs.append(proc)
    proc.wait_for(READY)
    owner = Client(port, source="127.0.0.2")
    assert owner.ask(type="REGISTER", port=24331)["type"] == "PEERS"
    squatter = Client(port, source="127.0.0.3")
    assert squatter.ask(type="REGISTER", host="127.0.0.2", port=24331)["code"] == "busy"

    def scrape() -> dict:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
        ) as answer:
            text = answer.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    figures = scrape()
    assert figures[("cheesecoin_tracker_members", ())] == 1
    assert figures[("cheesecoin_tracker_registrations_total", ())] == 1
    assert figures[("cheesecoin_tracker_refusals_total", (("kind", "registration"),))] == 1
    assert figures[("cheesecoin_tracker_connections", ())] == 2
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/other", timeout=10)
