"""Benchmark of the member: propagation across 20 members, and initial sync.

Propagation: a tracker and 20 real members (``twistd -n cheesemember``, 8 with
``quick``) on loopback find each other through the tracker. An observer peer
(a socket speaking HELLO) is connected to every member; a cheese is
ANNOUNCEd to one member and we time until every member has relayed it to its
observer (a member relays a cheese as soon as it is on its best stack).
Figures: p50 and max over several cheeses of "announce to the last member",
and the same network of members started with ``--features none`` (version-1
relay, the member before section 5.1) in the same run as the limit.

Initial sync: a stack of 1,200 cheeses with 25 signed payments each (quick:
300) is stored in a seed member's data directory; a fresh member started
with ``--connect`` downloads it by locator (signatures checked). We read the
download time from its log ("Synced from ... in S s") and compare with plain
Ed25519 verification of the same transactions measured in this run.

    .venv/bin/python bench/bench_member.py [--quick]
"""

from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import socket
import statistics
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import figure, print_table  # noqa: E402  (also puts tests/ on sys.path)

from procs import Proc  # noqa: E402

# Ports below the kernel's ephemeral range: with procs.free_port an outgoing connection of one
# member sometimes took the port another member was about to listen on (EADDRINUSE).
from bench_memory import listen_port as free_port  # noqa: E402

from bench_verify import plain_ed25519  # noqa: E402
from cheesecoin.storage.sqlite import open_stack  # noqa: E402
from cheesecoin.testing.chain import ChainBuilder, make_network, payment_stack  # noqa: E402

MINER = "cd" * 32


class Observer:
    """A peer that only listens: records when each ANNOUNCEd smell arrives."""

    def __init__(self, port: int, network_smell: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.seen: Dict[str, float] = {}
        hello = {
            "type": "HELLO", "version": 1, "network": network_smell, "node_id": secrets.token_hex(16),
            "port": None, "height": 0, "tip": network_smell, "work": "0",
        }
        self.send(hello)
        self.sock.setblocking(False)

    def send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg).encode("utf-8") + b"\n")

    def read(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        now = time.perf_counter()
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if msg.get("type") == "ANNOUNCE":
                self.seen.setdefault(msg["cheese"]["smell"], now)
            elif msg.get("type") == "PING":
                self.sock.setblocking(True)
                self.send({"type": "PONG", "id": msg.get("id")})
                self.sock.setblocking(False)


def _start_member(tmp: str, name: str, network_file: str, options: List[str], procs: List[Proc]) -> int:
    """A twistd member on free ports; returns its member port."""
    port = free_port()
    args = ["--network", network_file, "--data-dir", os.path.join(tmp, name, "data"), "--port", str(port),
            "--interface", "127.0.0.1", "--api-port", str(free_port()), "--miner-port", str(free_port())] + options
    proc = Proc.twistd("cheesemember", args, os.path.join(tmp, name), name=name)
    procs.append(proc)
    return port


def _write_network(tmp: str, network) -> str:
    path = os.path.join(tmp, "network.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    return path


def propagation(n_members: int, n_cheeses: int, features: str = "all") -> List[float]:
    """Seconds from ANNOUNCE to the last member, per cheese (members started with ``--features``)."""
    network = make_network("bench-propagation", bits=1, timestamp=int(time.time()) - 10**6)
    procs: List[Proc] = []
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _write_network(tmp, network)
        try:
            tracker_port = free_port()
            tracker = Proc.twistd("cheesetracker", ["--port", str(tracker_port), "--interface", "127.0.0.1"],
                                  os.path.join(tmp, "tracker"))
            procs.append(tracker)
            tracker.wait_for("Tracker waiting for new connection.")
            ports = [_start_member(tmp, f"m{i}", network_file,
                                   ["--tracker", f"127.0.0.1:{tracker_port}", "--features", features], procs)
                     for i in range(n_members)]
            for proc in procs[1:]:
                proc.wait_for("Registered with the tracker", timeout=60)
            time.sleep(2.0)  # let the members dial each other
            observers = [Observer(port, network.smell) for port in ports]
            sel = selectors.DefaultSelector()
            for obs in observers:
                sel.register(obs.sock, selectors.EVENT_READ, obs)
            feeder = socket.create_connection(("127.0.0.1", ports[0]), timeout=10)
            feeder.sendall(json.dumps({
                "type": "HELLO", "version": 1, "network": network.smell, "node_id": secrets.token_hex(16),
                "port": None, "height": 0, "tip": network.smell, "work": "0"}).encode() + b"\n")
            time.sleep(0.5)
            cheeses = ChainBuilder(network).extend(network.blue_cheese, n_cheeses, MINER)
            latencies = []
            for cheese in cheeses:
                start = time.perf_counter()
                feeder.sendall(json.dumps({"type": "ANNOUNCE", "cheese": cheese}).encode() + b"\n")
                deadline = start + 10
                while time.perf_counter() < deadline and not all(cheese["smell"] in o.seen for o in observers):
                    for key, _ in sel.select(timeout=0.5):
                        key.data.read()
                arrivals = [o.seen.get(cheese["smell"], deadline) for o in observers]
                latencies.append(max(arrivals) - start)
                time.sleep(0.05)
            feeder.close()
            for obs in observers:
                obs.sock.close()
            return latencies
        finally:
            for proc in procs:
                proc.stop()


def initial_sync(n_cheeses: int, per: int) -> Dict[str, float]:
    network = make_network("bench-sync", bits=1, timestamp=int(time.time()) - 10**6)
    cheeses = payment_stack(network, n_cheeses, per, n_keys=50)
    n_tx = sum(len(c["unit_of_information"]["transactions"]) for c in cheeses[1:])
    procs: List[Proc] = []
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _write_network(tmp, network)
        stack = open_stack(os.path.join(tmp, "seed", "data"), network)
        with stack.batch():
            for cheese in cheeses[1:]:
                stack.add_cheese(cheese, check_signatures=False)
        stack.close()
        try:
            seed_port = _start_member(tmp, "seed", network_file, [], procs)
            procs[-1].wait_for("listening on", timeout=60)
            _start_member(tmp, "late", network_file, ["--connect", f"127.0.0.1:{seed_port}"], procs)
            late = procs[-1]
            late.wait_for("Synced from", timeout=300)
            match = re.search(r"Synced from \S+: (\d+) cheeses in ([0-9.]+) s", late.output())
            assert match and int(match.group(1)) == n_cheeses, late.output()[-2000:]
            seconds = float(match.group(2))
        finally:
            for proc in procs:
                proc.stop()
    plain = min(plain_ed25519(cheeses) for _ in range(3))
    return {"seconds": seconds, "n_tx": n_tx, "n_cheeses": n_cheeses, "plain": plain}


def run(quick: bool = False) -> List[Dict[str, object]]:
    n_members, n_announce = (8, 10) if quick else (20, 30)
    n_sync, per = (300, 25) if quick else (1200, 25)
    version1 = statistics.median(propagation(n_members, n_announce, features="none")) * 1000
    latencies = propagation(n_members, n_announce)
    sync = initial_sync(n_sync, per)
    return [
        figure(f"propagation to {n_members} members, p50", statistics.median(latencies) * 1000, "ms",
               goal="< 50 ms"),
        figure(f"propagation to {n_members} members, p50, against --features none", statistics.median(latencies) * 1000,
               "ms", version1, "version-1 relay p50 (--features none)", goal="<= 1.0"),
        figure(f"propagation to {n_members} members, max", max(latencies) * 1000, "ms"),
        figure(f"initial sync of {n_sync} cheeses", sync["n_cheeses"] / sync["seconds"], "cheeses/s"),
        figure(f"initial sync, {per} tx per cheese", sync["n_tx"] / sync["seconds"], "tx/s",
               sync["n_tx"] / sync["plain"], "plain Ed25519 tx/s"),
        figure("initial sync time / plain Ed25519", sync["seconds"] / sync["plain"], "ratio", goal="< 1.5",
               ratio=sync["seconds"] / sync["plain"]),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
