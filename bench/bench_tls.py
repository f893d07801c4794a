"""Benchmark of encrypted member links (docs/protocol.md section 5.3, issue 30).

Each figure with ``tls`` is measured against the same thing without it, in
the same run on the same machine (members started with every other feature
of this revision: ``--features headers,compact,mempool,inv,compact-modes``):

- propagation: a tracker and 20 real members (8 with ``quick``) find each
  other through the tracker; an observer (a plain peer, which lists no
  feature) is connected to every member; a cheese is ANNOUNCEd to one member
  and we time until every member has relayed it to its observer. p50 over
  30 cheeses, with the member links encrypted against plain (goal <= 1.15).
- initial sync: a seed member holds 1,200 cheeses with 25 signed payments
  each (300 with ``quick``); a fresh member started with ``--connect``
  downloads it; the time is read from its log ("Synced from ... in S s"),
  over an encrypted link against a plain one (goal <= 1.10); three rounds
  of each, interleaved (two with ``quick``), the fastest of each kind.
- RSS per encrypted connection: a member with 200 inbound peers (100 with
  ``quick``) that each did HELLO, STARTTLS and the TLS 1.3 handshake,
  against 200 plain peers (HELLO only) of the same member kind: the growth
  of its ``VmRSS`` per connection.

    .venv/bin/python bench/bench_tls.py [--quick]
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import selectors
import socket
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import figure, print_table  # noqa: E402  (also puts tests/ on sys.path)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from OpenSSL import SSL  # noqa: E402
from procs import Proc, free_port, http_json  # noqa: E402

from cheesecoin.p2p.tls import TlsCreator  # noqa: E402
from cheesecoin.storage.identity import node_id_of  # noqa: E402
from cheesecoin.storage.sqlite import open_stack  # noqa: E402
from cheesecoin.testing.chain import ChainBuilder, make_network, payment_stack  # noqa: E402

MINER = "cd" * 32
PLAIN = "headers,compact,mempool,inv,compact-modes"  # every feature of revision 3 but tls
TLS = "all"


def _hello(network, node_id: str, features: List[str] = ()) -> bytes:
    msg = {
        "type": "HELLO",
        "version": 1,
        "network": network.smell,
        "node_id": node_id,
        "port": None,
        "height": 0,
        "tip": network.smell,
        "work": "0",
    }
    if features:
        msg["features"] = list(features)
    return json.dumps(msg).encode() + b"\n"


class Observer:
    """A plain peer that only listens: records when each ANNOUNCEd smell arrives."""

    def __init__(self, port: int, network) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.seen: Dict[str, float] = {}
        self.sock.sendall(_hello(network, secrets.token_hex(16)))
        self.sock.setblocking(False)

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


def _member(
    tmp: str, name: str, network_file: str, options: List[str], procs: List[Proc]
) -> Tuple[int, Proc]:
    port, api = free_port(), free_port()
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
        str(api),
        "--miner-port",
        str(free_port()),
    ] + options
    proc = Proc.twistd("cheesemember", args, os.path.join(tmp, name), name=name)
    proc.api = api  # type: ignore[attr-defined]
    procs.append(proc)
    return port, proc


def _links(procs: List[Proc]) -> Tuple[int, int]:
    """(encrypted, all) member-to-member links, each counted at both ends."""
    peers = [
        p for proc in procs for p in http_json(f"http://127.0.0.1:{proc.api}/api/status")["peers"]
    ]
    return sum(1 for p in peers if p.get("encrypted")), len(peers)


def _network_file(tmp: str, network) -> str:
    path = os.path.join(tmp, "network.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    return path


def propagation(
    n_members: int, n_cheeses: int, features: str
) -> Tuple[List[float], Tuple[int, int]]:
    """Seconds from ANNOUNCE to the last member, per cheese; and (encrypted, all) member links."""
    network = make_network("bench-tls-propagation", bits=1, timestamp=int(time.time()) - 10**6)
    procs: List[Proc] = []
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _network_file(tmp, network)
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
                _member(
                    tmp,
                    f"m{i}",
                    network_file,
                    ["--tracker", f"127.0.0.1:{tracker_port}", "--features", features],
                    procs,
                )[0]
                for i in range(n_members)
            ]
            for proc in procs[1:]:
                proc.wait_for("Registered with the tracker", timeout=90)
            time.sleep(3.0)  # let the members dial each other
            links = _links(procs[1:])
            observers = [Observer(port, network) for port in ports]
            sel = selectors.DefaultSelector()
            for obs in observers:
                sel.register(obs.sock, selectors.EVENT_READ, obs)
            feeder = socket.create_connection(("127.0.0.1", ports[0]), timeout=10)
            feeder.sendall(_hello(network, secrets.token_hex(16)))
            time.sleep(0.5)
            latencies = []
            for cheese in ChainBuilder(network).extend(network.blue_cheese, n_cheeses, MINER):
                start = time.perf_counter()
                feeder.sendall(json.dumps({"type": "ANNOUNCE", "cheese": cheese}).encode() + b"\n")
                deadline = start + 10
                while time.perf_counter() < deadline and not all(
                    cheese["smell"] in o.seen for o in observers
                ):
                    for key, _ in sel.select(timeout=0.5):
                        key.data.read()
                latencies.append(
                    max(o.seen.get(cheese["smell"], deadline) for o in observers) - start
                )
                time.sleep(0.05)
            feeder.close()
            for obs in observers:
                obs.sock.close()
            return latencies, links
        finally:
            for proc in procs:
                proc.stop()


def initial_sync(cheeses: List[dict], network, features: str) -> float:
    """Seconds a fresh member takes to download ``cheeses`` from a seed (both with ``features``)."""
    procs: List[Proc] = []
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _network_file(tmp, network)
        stack = open_stack(os.path.join(tmp, "seed", "data"), network)
        with stack.batch():
            for cheese in cheeses[1:]:
                stack.add_cheese(cheese, check_signatures=False)
        stack.close()
        try:
            seed_port, seed = _member(tmp, "seed", network_file, ["--features", features], procs)
            seed.wait_for("listening on", timeout=120)
            _, late = _member(
                tmp,
                "late",
                network_file,
                ["--features", features, "--connect", f"127.0.0.1:{seed_port}"],
                procs,
            )
            late.wait_for("Synced from", timeout=600)
            match = re.search(r"Synced from \S+: (\d+) cheeses in ([0-9.]+) s", late.output())
            assert match and int(match.group(1)) == len(cheeses) - 1, late.output()[-2000:]
            return float(match.group(2))
        finally:
            for proc in procs:
                proc.stop()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _settled_rss(pid: int) -> int:
    """The lowest of three readings after the member had a moment to settle."""
    time.sleep(1.5)
    readings = []
    for _ in range(3):
        readings.append(_rss(pid))
        time.sleep(0.2)
    return min(readings)


def _encrypted_peer(port: int, network) -> SSL.Connection:
    """HELLO (tls), STARTTLS, the TLS handshake as the connecting side; the open connection."""
    key = Ed25519PrivateKey.generate()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_hello(network, node_id_of(key), ["tls"]))
    data = b""
    while data.count(b"\n") < 1:
        data += sock.recv(65536)
    sock.sendall(b'{"type":"STARTTLS"}\n')
    while b"STARTTLS" not in data:
        data += sock.recv(65536)
    sock.setblocking(False)
    conn = SSL.Connection(TlsCreator(key).context, sock)
    conn.set_connect_state()
    deadline = time.monotonic() + 10
    while True:
        try:
            conn.do_handshake()
            return conn
        except SSL.WantReadError:
            if time.monotonic() > deadline:
                raise RuntimeError("TLS handshake timed out")
            select.select([sock], [], [], 0.2)


def rss_per_connection(count: int, encrypted: bool) -> float:
    """Bytes of the member's RSS per inbound peer (``count`` of them, encrypted or plain)."""
    network = make_network("bench-tls-rss", bits=1, timestamp=int(time.time()) - 10**6)
    procs: List[Proc] = []
    with tempfile.TemporaryDirectory() as tmp:
        network_file = _network_file(tmp, network)
        try:
            port, proc = _member(
                tmp, "m", network_file, ["--peers", "0", "--max-inbound", str(count + 10)], procs
            )
            proc.wait_for("HTTP API on", timeout=60)
            pid = proc.popen.pid
            before = _settled_rss(pid)
            peers = []
            for _ in range(count):
                if encrypted:
                    peers.append(_encrypted_peer(port, network))
                else:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    sock.sendall(_hello(network, secrets.token_hex(16)))
                    peers.append(sock)
            after = _settled_rss(pid)
            connected = proc.output().count(" connected (inbound")
            assert connected >= count, f"{connected} of {count} peers connected"
            for peer in peers:
                peer.close()
            return (after - before) / count
        finally:
            for proc in procs:
                proc.stop()


def run(quick: bool = False) -> List[Dict[str, object]]:
    n_members, n_announce = (8, 10) if quick else (20, 30)
    n_sync, per = (300, 25) if quick else (1200, 25)
    n_conn = 100 if quick else 200
    plain_prop, _ = propagation(n_members, n_announce, PLAIN)
    tls_prop, links = propagation(n_members, n_announce, TLS)
    network = make_network("bench-tls-sync", bits=1, timestamp=int(time.time()) - 10**6)
    cheeses = payment_stack(network, n_sync, per, n_keys=50)
    # Interleaved rounds, the fastest of each kind: the machine is shared, and a
    # round that another process slowed says nothing about TLS.
    syncs: Dict[str, List[float]] = {PLAIN: [], TLS: []}
    for _ in range(2 if quick else 3):
        for features in (PLAIN, TLS):
            syncs[features].append(initial_sync(cheeses, network, features))
    plain_sync, tls_sync = min(syncs[PLAIN]), min(syncs[TLS])
    plain_rss = rss_per_connection(n_conn, encrypted=False)
    tls_rss = rss_per_connection(n_conn, encrypted=True)
    p50_plain, p50_tls = statistics.median(plain_prop) * 1000, statistics.median(tls_prop) * 1000
    return [
        figure(
            f"propagation to {n_members} members over TLS, p50 "
            f"({links[0]} of {links[1]} link ends encrypted)",
            p50_tls,
            "ms",
            p50_plain,
            "the same without tls, p50",
            goal="<= 1.15",
        ),
        figure(
            f"propagation to {n_members} members over TLS, max",
            max(tls_prop) * 1000,
            "ms",
            max(plain_prop) * 1000,
            "the same without tls, max",
        ),
        figure(
            f"initial sync of {n_sync} x {per} over TLS (fastest of {len(syncs[TLS])})",
            tls_sync,
            "s",
            plain_sync,
            "the same without tls",
            goal="<= 1.10",
        ),
        figure(
            f"RSS per encrypted inbound connection ({n_conn})",
            tls_rss / 1024,
            "KiB",
            plain_rss / 1024,
            "RSS per plain inbound connection",
        ),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
