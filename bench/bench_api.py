"""Benchmark of the HTTP API: signed payments posted until they are mined.

Starts a real ``twistd -n cheesemember`` that mines alone (2 worker
processes) on a private network (bits 20, about a cheese every half second
on a small machine; a large reward so that one cheese funds everything). A funder key is paid by the
mining; it pays 16 sender keys (8 with ``quick``), and once that is
confirmed the timed part begins: the senders' payments, signed beforehand,
are posted to ``POST /api/transactions`` from 4 client threads over
keep-alive connections, each sender's in nonce order. Every one must be
answered 202. Meanwhile a poller watches ``/api/status`` (every 20 ms) to
learn when each cheese appeared; afterwards each txid is found in its cheese
(``/api/cheese/N`` lists txids), which gives each payment's time from its
202 to the first sight of the cheese that holds it. The full run then
measures acceptance again (400 payments) with a member mining on its single
in-process thread (``--mining-workers 1``), which competes with the reactor
for Python's interpreter lock.

    .venv/bin/python bench/bench_api.py [--quick]
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_tracker import TWISTD, _figure, _free_port, _percentile, _table  # noqa: E402
from common import stop_process  # noqa: E402

from cheesecoin.core.cheese import mine_blue_cheese  # noqa: E402
from cheesecoin.core.tx import address_of, sign_tx, txid  # noqa: E402
from cheesecoin.testing.chain import key_from_seed  # noqa: E402

PAYMENTS, SENDERS = 4000, 16
QUICK_PAYMENTS, QUICK_SENDERS = 400, 8
CLIENT_THREADS = 4
BITS = 20
MINING_WORKERS = 2  # processes: the nonce search is off the reactor's interpreter
REWARD = 10**9
ACCEPT_GOAL = 500.0  # payments accepted per second
P99_CONFIRM_GOAL = 5.0  # seconds from 202 to the cheese, at about 0.5 s a cheese
READY = "HTTP API on"


class Client:
    """One keep-alive HTTP connection to the member's API."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def get(self, path: str) -> Any:
        status, answer = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {answer}")
        return answer

    def close(self) -> None:
        self.conn.close()


def _wait(what: str, predicate: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def _start_member(workdir: Path, miner: str, mining_workers: int) -> Tuple[subprocess.Popen, int]:
    network = mine_blue_cheese(
        "bench-api", BITS, int(time.time()) - 60, 10, 0, REWARD, 1000, "bench"
    )
    (workdir / "net.json").write_text(json.dumps(network))
    api_port = _free_port()
    log_path = workdir / "member.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(
        TWISTD
        + ["-n", "--pidfile=", "--logfile=-", "cheesemember", "--network", "net.json",
           "--data-dir", "data", "--port", str(_free_port()), "--api-port", str(api_port),
           "--miner-port", str(_free_port()), "--mine", "--mining-workers", str(mining_workers),
           "--miner-address", miner],
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    log_file.close()
    deadline = time.monotonic() + 60
    while READY not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                "the member did not start:\n" + log_path.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.05)
    return proc, api_port


class HeightWatcher(threading.Thread):
    """Polls /api/status and records when each height was first seen."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = Client(port)
        self.seen: Dict[int, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            height = self.client.get("/api/status")["height"]
            now = time.perf_counter()
            for h in range(max(self.seen, default=height - 1) + 1, height + 1):
                self.seen.setdefault(h, now)
            self.halt.wait(0.02)
        self.client.close()


def _fund_senders(port: int, funder: Any, senders: List[Any], budget: int) -> None:
    client = Client(port)
    try:
        _wait(
            "mined coins",
            lambda: (
                client.get(f"/api/balance/{address_of(funder)}")["balance"] >= budget * len(senders)
            ),
        )
        for nonce, key in enumerate(senders):
            status, answer = client.call(
                "POST", "/api/transactions", sign_tx(funder, address_of(key), budget, 0, nonce)
            )
            if status != 202:
                raise RuntimeError(f"funding refused: {answer}")
        last = address_of(senders[-1])
        _wait("funded senders", lambda: client.get(f"/api/balance/{last}")["balance"] == budget)
    finally:
        client.close()


def _post_all(port: int, queues: List[List[dict]]) -> Tuple[Dict[str, float], List[str]]:
    """Post every queue's payments in order, one thread per queue: ({txid: time of 202}, errors)."""
    accepted: Dict[str, float] = {}
    errors: List[str] = []

    def worker(queue: List[dict]) -> None:
        client = Client(port)
        try:
            for tx in queue:
                status, answer = client.call("POST", "/api/transactions", tx)
                if status != 202 or answer.get("txid") != txid(tx):
                    errors.append(f"{status} {answer}")
                    return
                accepted[answer["txid"]] = time.perf_counter()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted, errors


class Measurement:
    """What one run of payments through one member gave."""

    def __init__(
        self,
        total: int,
        seconds_posting: float,
        seconds_after: float,
        latencies: List[float],
        cheeses: int,
    ) -> None:
        self.total = total
        self.seconds_posting = seconds_posting
        self.seconds_after = seconds_after
        self.latencies = latencies
        self.cheeses = cheeses


def _measure(payments: int, sender_count: int, mining_workers: int) -> Measurement:
    """Start a member, fund the senders, post every payment and wait until all are mined."""
    per_sender = payments // sender_count
    funder = key_from_seed("bench-api-funder")
    senders = [key_from_seed(f"bench-api-sender-{i}") for i in range(sender_count)]
    sink = address_of(key_from_seed("bench-api-sink"))
    # Signed beforehand: the figures are the member's, not this process's signing.
    by_sender = [[sign_tx(key, sink, 1, 1, n) for n in range(per_sender)] for key in senders]
    queues: List[List[List[dict]]] = [[] for _ in range(CLIENT_THREADS)]
    for i, txs in enumerate(by_sender):
        queues[i % CLIENT_THREADS].append(txs)
    interleaved = [[tx for group in zip(*q) for tx in group] for q in queues]
    total = sum(len(q) for q in interleaved)

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        proc, port = _start_member(Path(tmp), address_of(funder), mining_workers)
        try:
            _fund_senders(port, funder, senders, per_sender * 2)
            watcher = HeightWatcher(port)
            watcher.start()
            _wait("the watcher", lambda: watcher.seen)
            start_height = max(watcher.seen)
            start = time.perf_counter()
            accepted, errors = _post_all(port, interleaved)
            posted = time.perf_counter()
            if errors:
                raise RuntimeError(f"{len(errors)} payments refused, first: {errors[0]}")
            client = Client(port)
            _wait(
                "every payment in a cheese",
                lambda: client.get(f"/api/balance/{sink}")["balance"] == total,
            )
            confirmed = time.perf_counter()
            end_height = client.get("/api/status")["height"]
            _wait("the watcher to see the last cheese", lambda: max(watcher.seen) >= end_height)
            watcher.halt.set()
            watcher.join()
            latencies = []
            holders = set()
            for height in range(start_height + 1, end_height + 1):
                for tx_id in client.get(f"/api/cheese/{height}")["txids"]:
                    if tx_id in accepted:
                        latencies.append(watcher.seen[height] - accepted[tx_id])
                        holders.add(height)
            client.close()
        finally:
            stop_process(proc)
    if len(latencies) != total:
        raise RuntimeError(f"found {len(latencies)} of {total} payments in cheeses")
    return Measurement(total, posted - start, confirmed - posted, latencies, len(holders))


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; return its figures.

    The member mines with 2 worker processes; the full run also measures
    acceptance with the single in-process mining thread, which shares the
    reactor's interpreter lock.
    """
    payments, sender_count = (QUICK_PAYMENTS, QUICK_SENDERS) if quick else (PAYMENTS, SENDERS)
    m = _measure(payments, sender_count, MINING_WORKERS)
    where = (
        f"{m.total} payments from {sender_count} senders, {CLIENT_THREADS} clients, "
        f"{MINING_WORKERS} mining processes, bits {BITS}"
    )
    figures = [
        _figure(f"API payments accepted per second ({where})", m.total / m.seconds_posting,
                "1/s", "higher", limit=ACCEPT_GOAL, limit_name="goal"),
        _figure(f"API median time from 202 to its cheese ({where})",
                _percentile(m.latencies, 0.5), "s", "lower"),
        _figure(f"API p99 time from 202 to its cheese ({where})",
                _percentile(m.latencies, 0.99), "s", "lower",
                limit=P99_CONFIRM_GOAL, limit_name="goal"),
        _figure(f"API time from the last 202 until all are mined ({where})", m.seconds_after,
                "s", "lower"),
        _figure(f"cheeses that held the payments ({where})", float(m.cheeses), "cheeses", "lower"),
    ]  # fmt: skip
    if not quick:
        one = _measure(QUICK_PAYMENTS, QUICK_SENDERS, 1)
        where = (
            f"{one.total} payments, {CLIENT_THREADS} clients, 1 mining thread in the member, "
            f"bits {BITS}"
        )
        figures.append(
            _figure(f"API payments accepted per second ({where})",
                    one.total / one.seconds_posting, "1/s", "higher",
                    limit=ACCEPT_GOAL, limit_name="goal")
        )  # fmt: skip
    return figures


if __name__ == "__main__":
    print(_table(run(quick="--quick" in sys.argv[1:])))
