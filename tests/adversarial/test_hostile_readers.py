"""Clients that never read, against a real member (``twistd cheesemember``):
8 peers from 8 loopback addresses sending 2,000 ``GET_CHEESES`` each, one
HTTP client pipelining 3,000 requests, and 50 miner-port clients receiving
pushed ``WORK``, none of them reading a byte. The member's resident memory
stays within 64 MiB of its level before, and an honest peer is answered
throughout (back-pressure on all three ports: docs/security.md).
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from typing import List

import pytest
from procs import Proc, free_port, http_json

from cheesecoin.storage.sqlite import open_stack
from cheesecoin.testing.chain import ChainBuilder, make_network, payment_stack

pytestmark = pytest.mark.slow

NET = make_network("readers", bits=1, timestamp=int(time.time()) - 10**6)
ALLOWED_GROWTH = 64 * 1024 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def hello(node_id: str, height: int = 0, tip: str = NET.smell, work: str = "2") -> bytes:
    return (
        json.dumps(
            {
                "type": "HELLO",
                "version": 1,
                "network": NET.smell,
                "node_id": node_id,
                "port": None,
                "height": height,
                "tip": tip,
                "work": work,
            }
        ).encode()
        + b"\n"
    )


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
    )  # a reader that does not read: a small window
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


class Honest:
    """A peer that reads: STATS answered within a few seconds, each time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.reader = self.sock.makefile("rb")
        self.sock.sendall(hello(secrets.token_hex(8)))
        self.next_id = 0

    def stats(self) -> dict:
        self.next_id += 1
        self.sock.sendall(json.dumps({"type": "STATS", "id": self.next_id}).encode() + b"\n")
        while True:
            msg = json.loads(self.reader.readline())
            if msg.get("type") == "STATS_REPLY" and msg.get("id") == self.next_id:
                return msg

    def announce(self, cheese: dict) -> None:
        self.sock.sendall(json.dumps({"type": "ANNOUNCE", "cheese": cheese}).encode() + b"\n")


def sendall_nonblocking(sock: socket.socket, data: bytes, budget: float = 5.0) -> int:
    """Send as much of ``data`` as the peer takes within ``budget`` seconds (it stops reading)."""
    sock.setblocking(False)
    sent, deadline = 0, time.monotonic() + budget
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    return sent


def test_clients_that_never_read_cannot_make_the_member_hold_their_replies(tmp_path, procs) -> None:
    data = str(tmp_path / "data")
    cheeses = payment_stack(NET, 700, 5, n_keys=8)
    stack = open_stack(data, NET)
    for cheese in cheeses[1:]:
        stack.add_cheese(cheese, check_signatures=False)
    stack.close()
    network_file = tmp_path / "net.json"
    network_file.write_text(json.dumps(NET.blue_cheese))
    port, api, miner = free_port(), free_port(), free_port()
    member = Proc.twistd(
        "cheesemember",
        [
            "--network",
            str(network_file),
            "--data-dir",
            data,
            "--port",
            str(port),
            "--interface",
            "127.0.0.1",
            "--api-port",
            str(api),
            "--miner-port",
            str(miner),
            "--max-inbound",
            "64",
        ],
        str(tmp_path),
        name="member",
    )
    procs.append(member)
    member.wait_for("HTTP API on", timeout=60)
    pid = member.popen.pid
    honest = Honest(port)
    assert honest.stats()["height"] == 700
    time.sleep(1)
    before = rss(pid)

    attackers: List[socket.socket] = []
    request = json.dumps({"type": "GET_CHEESES", "from": 1, "count": 500}).encode() + b"\n"
    for i in range(8):  # 8 peers, 8 loopback addresses, 2,000 requests each
        sock = connect_from(f"127.0.0.{i + 2}", port)
        sendall_nonblocking(sock, hello(secrets.token_hex(8)) + request * 2000, budget=2)
        attackers.append(sock)
    assert honest.stats()["height"] == 700
    pipeline = b"GET /api/cheeses?from=1&count=500 HTTP/1.1\r\nHost: member\r\n\r\n" * 3000
    http = connect_from("127.0.0.20", api)
    sendall_nonblocking(http, pipeline, budget=3)
    attackers.append(http)
    for i in range(50):  # 50 miners that take WORK and never read it
        attackers.append(connect_from("127.0.0.30", miner))
    tip = cheeses[-1]
    for new in ChainBuilder(NET).extend(tip, 30, "ab" * 32):  # each new tip pushes WORK to all 50
        honest.announce(new)
        assert honest.stats()["tip"] == new["smell"]  # answered at once, every time
        tip = new
    time.sleep(2)
    after = rss(pid)
    assert honest.stats()["height"] == 730
    assert (
        http_json(f"http://127.0.0.1:{api}/api/status", timeout=10)["height"] == 730
    )  # the API serves others
    growth = after - before
    print(
        f"RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB "
        f"(+{growth / 2**20:.1f} MiB)"
    )
    assert growth <= ALLOWED_GROWTH, f"the member grew by {growth / 2**20:.1f} MiB"
    for sock in attackers:
        sock.close()
