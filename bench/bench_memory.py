"""Benchmark of memory: RSS of an idle member, of one holding 10,000 cheeses,
and of one under 32 inbound peers that never read its replies.

Every figure is the resident set size (``VmRSS`` in ``/proc/PID/status``) of a
real ``twistd -n cheesemember`` subprocess (no tracker, no peers, not mining),
read once its HTTP API answers ``/api/status`` (and, for the full member, once
it reports height 10,000), after a short settle. The limit measured in the
same run is the RSS of a bare Python process that only imports Twisted's
reactor and the ``cryptography`` Ed25519 binding (OpenSSL loaded): what any
Twisted + cryptography program pays before it holds anything.

The 10,000-cheese stack (2 signed payments per cheese, on a bits=1 network
file made with ``cheesecoin.testing``) is written straight into the member's
data directory with ``cheesecoin.storage.open_stack`` inside ``stack.batch()``
before the member starts; the member then loads it from SQLite.

    .venv/bin/python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import figure, print_table  # noqa: E402  (also puts tests/ on sys.path)
from procs import Proc, http_json, wait_until  # noqa: E402
from procs import free_port as listen_port

from cheesecoin.storage.sqlite import open_stack  # noqa: E402
from cheesecoin.testing.chain import ChainBuilder, make_network, payment_stack  # noqa: E402

MINER = "cd" * 32
MIB = 1024.0 * 1024.0
BARE = (
    "import twisted.internet.reactor, cryptography.hazmat.primitives.asymmetric.ed25519 as e\n"
    "e.Ed25519PrivateKey.generate().public_key()\n"
    "print(open('/proc/self/status').read())\n"
)


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """``field`` (VmRSS, VmHWM...) of process ``pid`` in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def _field(status_text: str, field: str) -> int:
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def bare_python_rss(rounds: int = 3) -> int:
    """RSS of a Python process that imports twisted's reactor and cryptography
    (the smallest of a few)."""
    values = []
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", BARE], capture_output=True, text=True, check=True, timeout=60
        )
        values.append(_field(out.stdout, "VmRSS"))
    return min(values)


def write_network(tmp: str, network) -> str:
    path = os.path.join(tmp, "network.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    return path


def store_stack(data_dir: str, network, cheeses: List[dict]) -> None:
    """Write ``cheeses`` (Blue Cheese first or not) into a member's data directory, in one batch."""
    stack = open_stack(data_dir, network)
    try:
        with stack.batch():
            for cheese in cheeses:
                if cheese["sequence_number"] > 0:
                    stack.add_cheese(cheese, check_signatures=False)
    finally:
        stack.close()


def start_member(
    tmp: str, name: str, network_file: str, options: Optional[List[str]] = None
) -> Tuple[Proc, int, int]:
    """A ``twistd -n cheesemember`` on free loopback ports; returns (proc, member
    port, api port)."""
    port, api_port = listen_port(), listen_port()
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
        str(api_port),
        "--miner-port",
        str(listen_port()),
    ]
    proc = Proc.twistd(
        "cheesemember", args + list(options or []), os.path.join(tmp, name), name=name
    )
    return proc, port, api_port


def wait_height(proc: Proc, api_port: int, height: int, timeout: float) -> float:
    """Seconds until the member's API reports ``height`` (fails if the member dies)."""
    start = time.perf_counter()

    def reached():
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        return http_json(f"http://127.0.0.1:{api_port}/api/status", timeout=5)["height"] >= height

    wait_until(reached, timeout=timeout, interval=0.05, what=f"{proc.name} at height {height}")
    return time.perf_counter() - start


def settled_rss(pid: int, settle: float = 1.0) -> int:
    """RSS after ``settle`` seconds of idling (the largest of a few reads over the
    last half second)."""
    time.sleep(max(0.0, settle - 0.5))
    values = []
    for _ in range(5):
        values.append(rss_bytes(pid))
        time.sleep(0.1)
    return max(values)


def member_rss(network, cheeses: List[dict], start_timeout: float = 300.0) -> Dict[str, float]:
    """RSS (and peak RSS, start time) of a member holding ``cheeses`` (may be just
    the Blue Cheese)."""
    height = max(c["sequence_number"] for c in cheeses) if cheeses else 0
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        network_file = write_network(tmp, network)
        if height:
            store_stack(os.path.join(tmp, "member", "data"), network, cheeses)
        proc, _, api_port = start_member(tmp, "member", network_file)
        try:
            start = time.perf_counter()
            wait_height(proc, api_port, height, start_timeout)
            ready = time.perf_counter() - start
            rss = settled_rss(proc.popen.pid)
            peak = rss_bytes(proc.popen.pid, "VmHWM")
        finally:
            proc.stop()
    return {"rss": rss, "peak": peak, "ready": ready, "height": height}


def _hello(network) -> bytes:
    return (
        json.dumps(
            {
                "type": "HELLO",
                "version": 1,
                "network": network.smell,
                "node_id": os.urandom(8).hex(),
                "port": None,
                "height": 0,
                "tip": network.smell,
                "work": "2",
            }
        ).encode()
        + b"\n"
    )


def readers_rss(
    network, cheeses: List[dict], peers: int = 32, requests: int = 2000
) -> Dict[str, float]:
    """RSS of a member holding ``cheeses``, idle and then with ``peers`` inbound
    peers (each from its own loopback address, the most --max-inbound allows)
    that send ``requests`` GET_CHEESES of 500 cheeses each and never read."""
    import socket

    height = max(c["sequence_number"] for c in cheeses)
    with tempfile.TemporaryDirectory(prefix="bench-readers-") as tmp:
        network_file = write_network(tmp, network)
        store_stack(os.path.join(tmp, "member", "data"), network, cheeses)
        proc, port, api_port = start_member(
            tmp, "member", network_file, ["--max-inbound", str(peers)]
        )
        sockets = []
        try:
            wait_height(proc, api_port, height, 300)
            idle = settled_rss(proc.popen.pid)
            line = json.dumps({"type": "GET_CHEESES", "from": 1, "count": 500}).encode() + b"\n"
            for i in range(peers):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.bind((f"127.0.1.{i + 1}", 0))
                sock.connect(("127.0.0.1", port))
                sock.setblocking(False)
                data, deadline = _hello(network) + line * requests, time.monotonic() + 1.0
                while data and time.monotonic() < deadline:
                    try:
                        data = data[sock.send(data[:65536]) :]
                    except BlockingIOError:
                        time.sleep(0.01)
                sockets.append(sock)
            loaded = settled_rss(proc.popen.pid, settle=3.0)
            answered = (
                http_json(f"http://127.0.0.1:{api_port}/api/status", timeout=10)["height"] == height
            )
        finally:
            for sock in sockets:
                sock.close()
            proc.stop()
    return {"idle": idle, "loaded": loaded, "answered": answered}


def run(quick: bool = False, n_cheeses: int = 10000, per: int = 2) -> List[Dict[str, object]]:
    network = make_network("bench-memory", bits=1, timestamp=int(time.time()) - 10**6)
    bare = bare_python_rss()
    idle = member_rss(network, [network.blue_cheese])
    if per:
        cheeses = payment_stack(network, n_cheeses, per, n_keys=50)
    else:
        cheeses = [network.blue_cheese] + ChainBuilder(network).extend(
            network.blue_cheese, n_cheeses, MINER
        )
    n_tx = sum(len(c["unit_of_information"]["transactions"]) for c in cheeses[1:])
    full = member_rss(network, cheeses)
    per_cheese = (full["rss"] - idle["rss"]) / n_cheeses
    bare_mib = bare / MIB
    readers = readers_rss(network, cheeses[: 501 if quick else 2001])
    growth = (readers["loaded"] - readers["idle"]) / MIB
    return [
        figure(
            "RSS, member under 32 inbound peers that never read (2,000 GET_CHEESES of 500 each)",
            readers["loaded"] / MIB,
            "MiB",
            readers["idle"] / MIB,
            "the same member idle, just before",
        ),
        figure(
            "RSS growth under 32 peers that never read"
            + ("" if readers["answered"] else " (API did not answer!)"),
            growth if readers["answered"] else float("inf"),
            "MiB",
            goal="<= 64 MiB",
        ),
        figure("RSS, bare Python + twisted + cryptography", bare_mib, "MiB"),
        figure(
            "RSS, idle member",
            idle["rss"] / MIB,
            "MiB",
            bare_mib,
            "bare Python + twisted + cryptography RSS",
        ),
        figure(
            f"RSS, member holding {n_cheeses} cheeses ({n_tx} tx)",
            full["rss"] / MIB,
            "MiB",
            bare_mib,
            "bare Python + twisted + cryptography RSS",
        ),
        figure(
            f"peak RSS, member loading {n_cheeses} cheeses",
            full["peak"] / MIB,
            "MiB",
            bare_mib,
            "bare Python + twisted + cryptography RSS",
        ),
        figure(
            f"RSS per cheese held (({n_cheeses}-cheese member - idle member) / {n_cheeses})",
            per_cheese / 1024.0,
            "KiB",
        ),
        figure(
            f"start of a member holding {n_cheeses} cheeses, to API height {n_cheeses}",
            full["ready"],
            "s",
        ),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv[1:]))
