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
libsodium verification of the same transactions on one core, measured in
this run (the limit, goal at most 1.0), and plain ``cryptography`` (a second
column). With $CHEESECOIN_BENCH_BASELINE naming another checkout (``git
worktree add``), a seed and a fresh member of that code sync the same stack
in the same run: the speed-up over it is a figure (goal at least 1.5).

    .venv/bin/python bench/bench_member.py [--quick] [--sync-only]
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
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Ports below the kernel's ephemeral range: with procs.free_port an outgoing connection of one
# member sometimes took the port another member was about to listen on (EADDRINUSE).
from bench_memory import listen_port as free_port  # noqa: E402
from common import (  # noqa: E402  (also puts tests/ on sys.path)  # noqa: E402
    ROOT,
    baseline_tree,
    figure,
    plain_cryptography,
    plain_libsodium,
    print_table,
    run_in_tree,
    tree_env,
)
from procs import Proc  # noqa: E402

from cheesecoin.testing.chain import ChainBuilder, make_network, payment_stack  # noqa: E402

MINER = "cd" * 32


class Observer:
    """A peer that only listens: records when each ANNOUNCEd smell arrives."""

    def __init__(self, port: int, network_smell: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.seen: Dict[str, float] = {}
        hello = {
            "type": "HELLO",
            "version": 1,
            "network": network_smell,
            "node_id": secrets.token_hex(16),
            "port": None,
            "height": 0,
            "tip": network_smell,
            "work": "0",
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


def _start_member(
    tmp: str,
    name: str,
    network_file: str,
    options: List[str],
    procs: List[Proc],
    env: Optional[Dict[str, str]] = None,
) -> int:
    """A twistd member on free ports (``env``: its code from another checkout); its member port."""
    port = free_port()
    args = [
        "--network",
        network_file,
        "--data-dir",
        os.path.join(tmp, name, "data"),
        "--port",
        str(port),
        "--interface",
        "127.0.0.1",
        "--api-port",
        str(free_port()),
        "--miner-port",
        str(free_port()),
    ] + options
    proc = Proc.twistd("cheesemember", args, os.path.join(tmp, name), name=name, env=env)
    procs.append(proc)
    return port


def _write_network(tmp: str, network) -> str:
    path = os.path.join(tmp, "network.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    return path


def propagation(n_members: int, n_cheeses: int, features: str = "all") -> List[float]:
    """Seconds from ANNOUNCE to the last member, per cheese (members started with
    ``--features``)."""
    network = make_network("bench-propagation", bits=1, timestamp=int(time.time()) - 10**6)
    procs: List[Proc] = []
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _write_network(tmp, network)
        try:
            tracker_port = free_port()
            tracker = Proc.twistd(
                "cheesetracker",
                ["--port", str(tracker_port), "--interface", "127.0.0.1"],
                os.path.join(tmp, "tracker"),
            )
            procs.append(tracker)
            tracker.wait_for("Tracker waiting for new connection.")
            ports = [
                _start_member(
                    tmp,
                    f"m{i}",
                    network_file,
                    ["--tracker", f"127.0.0.1:{tracker_port}", "--features", features],
                    procs,
                )
                for i in range(n_members)
            ]
            for proc in procs[1:]:
                proc.wait_for("Registered with the tracker", timeout=60)
            time.sleep(2.0)  # let the members dial each other
            observers = [Observer(port, network.smell) for port in ports]
            sel = selectors.DefaultSelector()
            for obs in observers:
                sel.register(obs.sock, selectors.EVENT_READ, obs)
            feeder = socket.create_connection(("127.0.0.1", ports[0]), timeout=10)
            feeder.sendall(
                json.dumps(
                    {
                        "type": "HELLO",
                        "version": 1,
                        "network": network.smell,
                        "node_id": secrets.token_hex(16),
                        "port": None,
                        "height": 0,
                        "tip": network.smell,
                        "work": "0",
                    }
                ).encode()
                + b"\n"
            )
            time.sleep(0.5)
            cheeses = ChainBuilder(network).extend(network.blue_cheese, n_cheeses, MINER)
            latencies = []
            for cheese in cheeses:
                start = time.perf_counter()
                feeder.sendall(json.dumps({"type": "ANNOUNCE", "cheese": cheese}).encode() + b"\n")
                deadline = start + 10
                while time.perf_counter() < deadline and not all(
                    cheese["smell"] in o.seen for o in observers
                ):
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


# Run with cheesecoin imported from the tree under test: store a stack file's
# cheeses (signatures not checked) in a seed member's data directory.
STORE_SEED = """
import json, sys
from cheesecoin.core.cheese import network_from_blue_cheese
from cheesecoin.storage.sqlite import open_stack
with open(sys.argv[1], encoding="utf-8") as f:
    cheeses = json.load(f)
stack = open_stack(sys.argv[2], network_from_blue_cheese(cheeses[0]))
with stack.batch():
    for cheese in cheeses[1:]:
        stack.add_cheese(cheese, check_signatures=False)
stack.close()
"""


def timed_sync(tmp: str, network_file: str, stack_file: str, n_cheeses: int, tree: str) -> float:
    """Seconds a fresh member with the code of ``tree`` takes to download the
    stack by locator from a seed member of the same code (from its log)."""
    procs: List[Proc] = []
    env = tree_env(tree)
    where = os.path.join(tmp, f"run-{len(os.listdir(tmp))}")
    run_in_tree(tree, STORE_SEED, stack_file, os.path.join(where, "seed", "data"))
    try:
        seed_port = _start_member(where, "seed", network_file, [], procs, env)
        procs[-1].wait_for("listening on", timeout=60)
        connect = ["--connect", f"127.0.0.1:{seed_port}"]
        _start_member(where, "late", network_file, connect, procs, env)
        late = procs[-1]
        late.wait_for("Synced from", timeout=300)
        match = re.search(r"Synced from \S+: (\d+) cheeses in ([0-9.]+) s", late.output())
        assert match and int(match.group(1)) == n_cheeses, late.output()[-2000:]
        return float(match.group(2))
    finally:
        for proc in procs:
            proc.stop()


def initial_sync(n_cheeses: int, per: int) -> Dict[str, float]:
    network = make_network("bench-sync", bits=1, timestamp=int(time.time()) - 10**6)
    cheeses = payment_stack(network, n_cheeses, per, n_keys=50)
    n_tx = sum(len(c["unit_of_information"]["transactions"]) for c in cheeses[1:])
    baseline = baseline_tree()
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _write_network(tmp, network)
        stack_file = os.path.join(tmp, "stack.json")
        with open(stack_file, "w", encoding="utf-8") as f:
            json.dump(cheeses, f)
        seconds = timed_sync(tmp, network_file, stack_file, n_cheeses, ROOT)
        old = timed_sync(tmp, network_file, stack_file, n_cheeses, baseline) if baseline else None
    sodium = min(plain_libsodium(cheeses) for _ in range(3))
    openssl = min(plain_cryptography(cheeses) for _ in range(2))
    return {
        "seconds": seconds,
        "n_tx": n_tx,
        "n_cheeses": n_cheeses,
        "plain": sodium,
        "openssl": openssl,
        "baseline": old,
    }


def sync_figures(n_sync: int, per: int) -> List[Dict[str, object]]:
    """The initial sync's figures (and the baseline's, when one is named)."""
    sync = initial_sync(n_sync, per)
    figures = [
        figure(f"initial sync of {n_sync} cheeses", n_sync / sync["seconds"], "cheeses/s"),
        figure(
            f"initial sync, {per} tx per cheese",
            sync["n_tx"] / sync["seconds"],
            "tx/s",
            sync["n_tx"] / sync["plain"],
            "plain libsodium tx/s (1 core)",
        ),
        figure(
            "initial sync time / plain libsodium",
            sync["seconds"] / sync["plain"],
            "ratio",
            goal="<= 1.0",
            ratio=sync["seconds"] / sync["plain"],
        ),
        figure(
            "initial sync time / plain cryptography",
            sync["seconds"] / sync["openssl"],
            "ratio",
            ratio=sync["seconds"] / sync["openssl"],
        ),
    ]
    if sync["baseline"] is not None:  # value: the baseline's time; limit: ours; ratio: the speed-up
        figures.append(
            figure(
                "initial sync time of the baseline code",
                sync["baseline"],
                "s",
                sync["seconds"],
                "this code, s",
                goal=">= 1.5",
            )
        )
    return figures


def run(quick: bool = False) -> List[Dict[str, object]]:
    n_members, n_announce = (8, 10) if quick else (20, 30)
    n_sync, per = (300, 25) if quick else (1200, 25)
    version1 = statistics.median(propagation(n_members, n_announce, features="none")) * 1000
    latencies = propagation(n_members, n_announce)
    return [
        figure(
            f"propagation to {n_members} members, p50",
            statistics.median(latencies) * 1000,
            "ms",
            goal="< 50 ms",
        ),
        figure(
            f"propagation to {n_members} members, p50, against --features none",
            statistics.median(latencies) * 1000,
            "ms",
            version1,
            "version-1 relay p50 (--features none)",
            goal="<= 1.0",
        ),
        figure(f"propagation to {n_members} members, max", max(latencies) * 1000, "ms"),
    ] + sync_figures(n_sync, per)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--sync-only" in sys.argv:
        print_table(sync_figures(*((300, 25) if quick else (1200, 25))))
    else:
        print_table(run(quick=quick))
