"""Real members (``twistd cheesemember``) and a tracker on loopback.

Cheeses are mined in the test with ``cheesecoin.testing`` on a private
network (bits 1) and fed to one member by a fake peer over a socket: HELLO,
then ANNOUNCE. Heights and tips are read from each member's HTTP API.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from typing import List, Optional, Tuple

import pytest
from procs import Proc, free_port, http_json, wait_until

from cheesecoin.storage.sqlite import open_stack
from cheesecoin.testing.chain import ChainBuilder, make_network

NETWORK = make_network(name="itest", bits=1, timestamp=int(time.time()) - 10**6)
MINER_A = "aa" * 32
MINER_B = "bb" * 32


@pytest.fixture(scope="module")
def network_file(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("net") / "network.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(NETWORK.blue_cheese, f)
    return path


def chain(count: int, parent: Optional[dict] = None, miner: str = MINER_A) -> List[dict]:
    return ChainBuilder(NETWORK).extend(parent or NETWORK.blue_cheese, count, miner)


class Member:
    """A started member: its process, member port and API port."""

    def __init__(self, proc: Proc, port: int, api: int, data_dir: str) -> None:
        self.proc, self.port, self.api, self.data_dir = proc, port, api, data_dir

    def status(self) -> dict:
        return http_json(f"http://127.0.0.1:{self.api}/api/status", timeout=5)

    def height(self) -> int:
        return self.status()["height"]


def start_member(
    procs: list,
    tmp_path,
    name: str,
    network_file: str,
    tracker: Optional[int] = None,
    connect: Tuple[int, ...] = (),
    port: Optional[int] = None,
    data_dir: Optional[str] = None,
) -> Member:
    port = port or free_port()
    api = free_port()
    data_dir = data_dir or str(tmp_path / name / "data")
    options = [
        "--network",
        network_file,
        "--data-dir",
        data_dir,
        "--port",
        str(port),
        "--interface",
        "127.0.0.1",
        "--api-port",
        str(api),
        "--miner-port",
        str(free_port()),
    ]
    if tracker is not None:
        options += ["--tracker", f"127.0.0.1:{tracker}"]
    for other in connect:
        options += ["--connect", f"127.0.0.1:{other}"]
    proc = Proc.twistd("cheesemember", options, str(tmp_path / name), name=name)
    procs.append(proc)
    proc.wait_for("listening on", timeout=30)
    proc.wait_for("HTTP API on", timeout=30)
    return Member(proc, port, api, data_dir)


def start_tracker(procs: list, tmp_path) -> int:
    port = free_port()
    proc = Proc.twistd(
        "cheesetracker",
        ["--port", str(port), "--interface", "127.0.0.1"],
        str(tmp_path / "tracker"),
    )
    procs.append(proc)
    proc.wait_for("Tracker waiting for new connection.", timeout=30)
    return port


class FakePeer:
    """A hand-driven member over a socket: HELLO, then ANNOUNCEs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        self.send(
            {
                "type": "HELLO",
                "version": 1,
                "network": NETWORK.smell,
                "node_id": secrets.token_hex(16),
                "port": None,
                "height": 0,
                "tip": NETWORK.smell,
                "work": "2",
            }
        )
        hello = json.loads(self.reader.readline())
        assert hello["type"] == "HELLO" and hello["network"] == NETWORK.smell

    def send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg).encode("utf-8") + b"\n")

    def announce(self, cheeses: List[dict]) -> None:
        self.sock.sendall(
            b"".join(
                json.dumps({"type": "ANNOUNCE", "cheese": c}).encode() + b"\n" for c in cheeses
            )
        )

    def close(self) -> None:
        self.sock.close()


def wait_tip(members: List[Member], cheese: dict, timeout: float = 30.0) -> None:
    def same() -> bool:
        return all(m.status()["tip"] == cheese["smell"] for m in members)

    wait_until(
        same,
        timeout=timeout,
        what=f"every member at {cheese['sequence_number']} {cheese['smell'][:12]}",
    )


def stored_stack(data_dir: str, cheeses: List[dict]) -> None:
    """Write cheeses into a member's data directory before it starts."""
    stack = open_stack(data_dir, NETWORK)
    with stack.batch():
        for cheese in cheeses:
            stack.add_cheese(cheese, check_signatures=False)
    stack.close()


def test_tracker_and_five_members_converge(procs, tmp_path, network_file) -> None:
    tracker = start_tracker(procs, tmp_path)
    members = [
        start_member(procs, tmp_path, f"m{i}", network_file, tracker=tracker) for i in range(5)
    ]
    for m in members:
        m.proc.wait_for("Registered with the tracker", timeout=30)
    wait_until(
        lambda: all(len(m.status()["peers"]) >= 2 for m in members), timeout=30, what="peers"
    )
    cheeses = chain(20)
    peer = FakePeer(members[0].port)
    peer.announce(cheeses)
    wait_tip(members, cheeses[-1])
    assert all(m.height() == 20 for m in members)
    assert "Cheese 20 " in members[0].proc.output()
    peer.close()


def test_late_member_catches_up_then_survives_kill_9(procs, tmp_path, network_file) -> None:
    cheeses = chain(2000)
    seed_dir = str(tmp_path / "seed" / "data")
    stored_stack(seed_dir, cheeses)
    seed = start_member(procs, tmp_path, "seed", network_file, data_dir=seed_dir)
    assert seed.height() == 2000
    late = start_member(procs, tmp_path, "late", network_file, connect=(seed.port,))
    wait_tip([late], cheeses[-1], timeout=60)
    assert "Syncing from" in late.proc.output() and "%)" in late.proc.output()

    late.proc.kill9()
    again = start_member(
        procs,
        tmp_path,
        "late-again",
        network_file,
        connect=(seed.port,),
        port=late.port,
        data_dir=late.data_dir,
    )
    assert again.height() == 2000  # loaded from disk before listening
    more = chain(3, cheeses[-1])
    peer = FakePeer(seed.port)
    peer.announce(more)
    wait_tip([seed, again], more[-1])
    peer.close()


def test_partition_heals_to_the_branch_with_more_work(procs, tmp_path, network_file) -> None:
    common = chain(5)
    left_branch = chain(4, common[-1], miner=MINER_A)
    right_branch = chain(7, common[-1], miner=MINER_B)
    p1 = start_member(procs, tmp_path, "p1", network_file)
    p2 = start_member(procs, tmp_path, "p2", network_file, connect=(p1.port,))
    q1 = start_member(procs, tmp_path, "q1", network_file)
    q2 = start_member(procs, tmp_path, "q2", network_file, connect=(q1.port,))
    wait_until(
        lambda: p1.status()["peers"] and q1.status()["peers"], timeout=30, what="groups connected"
    )
    left, right = FakePeer(p1.port), FakePeer(q1.port)
    left.announce(common + left_branch)
    right.announce(common + right_branch)
    wait_tip([p1, p2], left_branch[-1])
    wait_tip([q1, q2], right_branch[-1])
    bridge = start_member(procs, tmp_path, "bridge", network_file, connect=(p2.port, q2.port))
    wait_tip([p1, p2, q1, q2, bridge], right_branch[-1], timeout=45)
    assert "Reorganisation: 4 cheeses abandoned" in p1.proc.output() + p2.proc.output()
    left.close()
    right.close()


def test_a_member_restarted_with_its_tracker_down_reconnects_to_its_old_peers(
    procs, tmp_path, network_file
) -> None:
    tracker_port = start_tracker(procs, tmp_path)
    tracker = procs[-1]
    a = start_member(procs, tmp_path, "a", network_file, tracker=tracker_port)
    b = start_member(procs, tmp_path, "b", network_file, tracker=tracker_port)
    wait_until(
        lambda: b.status()["peers"] and a.status()["peers"], timeout=30, what="a and b connected"
    )
    b_port = b.port
    b.proc.stop()
    assert "Member stopped" in b.proc.output()
    saved = json.loads(open(f"{b.data_dir}/peers.json", encoding="utf-8").read())
    assert ("127.0.0.1", a.port) in {(p["host"], p["port"]) for p in saved["peers"]}, saved
    tracker.stop()
    again = start_member(
        procs,
        tmp_path,
        "b-again",
        network_file,
        tracker=tracker_port,
        port=b_port,
        data_dir=b.data_dir,
    )
    assert "Loaded 1 members from the saved address book" in again.proc.output()
    wait_until(
        lambda: [p for p in again.status()["peers"] if p["port"] == a.port],
        timeout=30,
        what="b, restarted without its tracker, connected to a again",
    )
    assert "Registered with the tracker" not in again.proc.output()
    cheeses = chain(3)
    peer = FakePeer(a.port)
    peer.announce(cheeses)
    wait_tip([a, again], cheeses[-1])  # and they relay to each other
    peer.close()
