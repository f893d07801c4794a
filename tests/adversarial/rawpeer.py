"""Real-process helpers of the hostile round three (issue 26): a real
``twistd cheesemember`` started on a stack we build, and ``RawPeer``, a
blocking socket that speaks the member protocol line by line, so a test can
play a hostile peer byte for byte and an honest one beside it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from procs import Proc, free_port, http_json, wait_until

from cheesecoin.core.cheese import Network
from cheesecoin.storage.sqlite import open_stack

ALL_FEATURES = ["headers", "compact", "mempool"]


class Member:
    """A running member: its process, member port and API port."""

    def __init__(self, proc: Proc, port: int, api: int, data: str) -> None:
        self.proc, self.port, self.api, self.data = proc, port, api, data

    def status(self) -> Dict[str, Any]:
        return http_json(f"http://127.0.0.1:{self.api}/api/status", timeout=10)

    def height(self) -> int:
        return int(self.status()["height"])

    def cpu_seconds(self) -> float:
        """User + system CPU time the member's process has used so far."""
        with open(f"/proc/{self.proc.popen.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        with open(f"/proc/{self.proc.popen.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def start_member(
    tmp_path: Any,
    procs: List[Proc],
    network: Network,
    cheeses: Sequence[dict] = (),
    *extra: str,
    name: str = "member",
    signatures: bool = False,
) -> Member:
    """A ``twistd cheesemember`` on a data directory holding ``cheeses`` (Blue
    Cheese first, or nothing), listening on free loopback ports."""
    base = os.path.join(str(tmp_path), name)
    data = os.path.join(base, "data")
    os.makedirs(data, exist_ok=True)
    if len(cheeses) > 1:
        stack = open_stack(data, network)
        with stack.batch():
            for cheese in cheeses[1:]:
                stack.add_cheese(cheese, check_signatures=signatures)
        stack.close()
    network_file = os.path.join(base, "net.json")
    with open(network_file, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    port, api, miner = free_port(), free_port(), free_port()
    proc = Proc.twistd(
        "cheesemember",
        [
            "--network",
            network_file,
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
            *extra,
        ],
        base,
        name=name,
    )
    procs.append(proc)
    proc.wait_for("HTTP API on", timeout=60)
    return Member(proc, port, api, data)


class RawPeer:
    """One member-protocol connection driven by hand (blocking, line by line)."""

    def __init__(
        self,
        port: int,
        network: Network,
        source: str = "127.0.0.1",
        node_id: Optional[str] = None,
        features: Optional[List[str]] = None,
        height: int = 0,
        tip: Optional[str] = None,
        work: int = 1,
        listen_port: Optional[int] = None,
        timeout: float = 20.0,
        send_hello: bool = True,
    ) -> None:
        self.network = network
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()  # received, not yet a whole line (a timeout loses nothing)
        self.node_id = node_id or secrets.token_hex(16)
        self.next_id = 1000
        self.inbox: List[dict] = []  # read but not yet taken
        if send_hello:
            hello: Dict[str, Any] = {
                "type": "HELLO",
                "version": 1,
                "network": network.smell,
                "node_id": self.node_id,
                "port": listen_port,
                "height": height,
                "tip": tip or network.smell,
                "work": str(work),
            }
            if features is not None:
                hello["features"] = features
            self.send(hello)
            self.peer_hello = self.wait_for(lambda m: m.get("type") == "HELLO")

    def send(self, msg: Any) -> None:
        data = (
            msg
            if isinstance(msg, bytes)
            else json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        )
        self.sock.sendall(data)

    def read(self) -> Optional[dict]:
        """The next line (None when the member closed the connection); raises
        socket.timeout after the socket's timeout, keeping what came so far."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return json.loads(line)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 20.0) -> dict:
        """The first message (read earlier or now) that ``predicate`` accepts."""
        for i, msg in enumerate(self.inbox):
            if predicate(msg):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self.read()
            except socket.timeout:
                break
            if msg is None:
                raise ConnectionError("the member closed the connection")
            if predicate(msg):
                return msg
            self.inbox.append(msg)
            del self.inbox[:-2000]
        raise AssertionError(f"no matching message within {timeout} s")

    def request(self, msg: dict, timeout: float = 20.0) -> dict:
        """Send ``msg`` with a fresh id and return the reply carrying it."""
        self.next_id += 1
        rid = self.next_id
        self.send(dict(msg, id=rid))
        return self.wait_for(lambda m: m.get("id") == rid, timeout)

    def answer(self, msg: dict, reply: dict) -> None:
        """Reply to a request the member sent us."""
        out = dict(reply)
        if "id" in msg:
            out["id"] = msg["id"]
        self.send(out)

    def closed_by_member(self, timeout: float = 10.0) -> bool:
        """Whether the member closes this connection within ``timeout`` (messages
        read meanwhile kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self.read()
            except socket.timeout:
                return False
            except OSError:
                return True
            if msg is None:
                return True
            self.inbox.append(msg)
            del self.inbox[:-2000]
        return False

    def drain(self, seconds: float = 0.5) -> List[dict]:
        """Read for ``seconds`` (or until the member closes); returns the inbox."""
        self.closed_by_member(seconds)
        return self.inbox

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def honest_ping(member: Member, network: Network, timeout: float = 10.0) -> float:
    """Seconds an honest peer waits for its PONG (a fresh connection each call)."""
    peer = RawPeer(member.port, network, timeout=timeout)
    try:
        start = time.monotonic()
        peer.request({"type": "PING"}, timeout=timeout)
        return time.monotonic() - start
    finally:
        peer.close()


__all__ = [
    "Member",
    "RawPeer",
    "start_member",
    "honest_ping",
    "wait_until",
    "free_port",
    "ALL_FEATURES",
]
