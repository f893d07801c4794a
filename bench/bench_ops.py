"""Benchmark of the operator endpoints: ``GET /metrics`` and ``GET /api/events``
at 1,000 events a second, measured as what they cost the reactor.

One process holds a member's node (in-memory stack), its metrics, its event
log and its HTTP site on the real reactor, plus a JSON-line PING server on
the same reactor. A second process (forked, so that its threads do not take
the member's interpreter lock) is the outside world: a PING every 10 ms
timing the round trip, SSE_CLIENTS event-stream readers counting what they
receive, and a scraper fetching ``/metrics`` SCRAPES_PER_S times a second
(Prometheus scrapes every 15 s: this is far more).

First the PING round trip with nothing else running (the limit, measured in
the same run), then with the member publishing EVENT_RATE events a second
(tx events, a tip event every 100th, each also counted as traffic in the
metrics) to every stream while the scraper runs.

    .venv/bin/python bench/bench_ops.py [--quick]
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import threading
import time
import urllib.request
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import figure, print_table  # noqa: E402
from common import percentile as _percentile
from common import pinger as _pinger

EVENT_RATE = 1000  # events a second
TICK = 0.01  # the publisher's period (EVENT_RATE * TICK events a tick)
SSE_CLIENTS = 8
SCRAPES_PER_S = 10
SECONDS, QUICK_SECONDS = 8.0, 4.0


# -- the outside world (its own process) ----------------------------------------------------------


def _reader(port: int, seconds: float, counts: List[int], index: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        sock.settimeout(1.0)
        deadline = time.perf_counter() + seconds
        seen = 0
        while time.perf_counter() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            seen += chunk.count(b"\nevent: ")
        counts[index] = seen


def _scraper(port: int, seconds: float, out: List[float]) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read()
        assert b"cheesecoin_messages_total" in body
        out.append(time.perf_counter() - started)
        time.sleep(max(0.0, 1.0 / SCRAPES_PER_S - (time.perf_counter() - started)))


def _world(ping_port: int, api_port: int, seconds: float, load: bool, results: Any) -> None:
    rtts: List[float] = []
    counts = [0] * SSE_CLIENTS
    scrapes: List[float] = []
    threads = [threading.Thread(target=_pinger, args=(ping_port, seconds, rtts))]
    if load:
        threads += [
            threading.Thread(target=_reader, args=(api_port, seconds, counts, i))
            for i in range(SSE_CLIENTS)
        ]
        threads.append(threading.Thread(target=_scraper, args=(api_port, seconds, scrapes)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put({"rtts": rtts, "counts": counts, "scrapes": scrapes})


# -- the member (this process, the real reactor) ---------------------------------------------------


def run(quick: bool = False) -> List[Dict[str, Any]]:
    from twisted.internet import defer, reactor, threads
    from twisted.internet.protocol import Factory
    from twisted.internet.task import LoopingCall

    from cheesecoin.core.node import MemberNode
    from cheesecoin.core.stack import CheeseStack
    from cheesecoin.testing.chain import make_network
    from cheesecoin.web.api import make_site
    from cheesecoin.web.events import EventLog
    from cheesecoin.web.metrics import MemberMetrics
    from cheesecoin.wire.lineproto import JsonLineProtocol

    class Ping(JsonLineProtocol):
        def msg_PING(self, msg: dict) -> None:
            self.reply(msg, {"type": "PONG"})

    seconds = QUICK_SECONDS if quick else SECONDS
    node = MemberNode(CheeseStack(make_network("bench-ops", bits=1)))
    metrics = MemberMetrics(node)
    events = EventLog(node, reactor)
    api_port = (
        reactor.listenTCP(0, make_site(node, metrics, events), interface="127.0.0.1").getHost().port
    )
    ping_port = (
        reactor.listenTCP(0, Factory.forProtocol(Ping), interface="127.0.0.1").getHost().port
    )
    published = [0]

    def publish() -> None:
        for _ in range(int(EVENT_RATE * TICK)):
            published[0] += 1
            if published[0] % 100 == 0:
                events.publish(
                    "tip",
                    {
                        "height": published[0] // 100,
                        "tip": "%040x" % published[0],
                        "work": "2",
                        "reorg_depth": 0,
                    },
                )
            else:
                events.publish("tx", {"txid": "%040x" % published[0]})
            metrics.traffic("in", "TX", 300)
            metrics.traffic("out", "TX", 300)

    context = multiprocessing.get_context("fork")
    figures: List[Dict[str, Any]] = []

    def phase(load: bool) -> defer.Deferred:
        results = context.Queue()
        world = context.Process(target=_world, args=(ping_port, api_port, seconds, load, results))
        world.start()
        return threads.deferToThread(lambda: (results.get(timeout=seconds + 60), world.join(10))[0])

    @defer.inlineCallbacks
    def main() -> Any:
        idle = yield phase(False)
        publisher = LoopingCall(publish)
        publisher.start(TICK)
        started, before = time.perf_counter(), published[0]
        loaded = yield phase(True)
        rate = (published[0] - before) / (time.perf_counter() - started)
        publisher.stop()
        base_p50, base_p99 = (
            _percentile(idle["rtts"], 0.5) * 1000,
            _percentile(idle["rtts"], 0.99) * 1000,
        )
        p50, p99 = _percentile(loaded["rtts"], 0.5) * 1000, _percentile(loaded["rtts"], 0.99) * 1000
        figures.append(figure("reactor PING p50, idle", base_p50, "ms"))
        figures.append(figure("reactor PING p99, idle", base_p99, "ms"))
        figures.append(
            figure(
                "events published",
                rate,
                "events/s",
                EVENT_RATE,
                "the rate asked for",
                goal=">= 0.95",
            )
        )
        figures.append(
            figure(
                f"reactor PING p50, {SSE_CLIENTS} event streams + /metrics {SCRAPES_PER_S}/s",
                p50,
                "ms",
                base_p50,
                "PING p50 idle",
            )
        )
        figures.append(
            figure(
                f"reactor PING p99, {SSE_CLIENTS} event streams + /metrics {SCRAPES_PER_S}/s",
                p99,
                "ms",
                base_p99,
                "PING p99 idle",
                goal="< 20 ms",
            )
        )
        figures.append(
            figure(
                "reactor PING max under that load",
                max(loaded["rtts"]) * 1000,
                "ms",
                goal="< 100 ms",
            )
        )
        per_client = min(loaded["counts"]) / seconds
        figures.append(
            figure(
                "events received per stream (slowest of them)",
                per_client,
                "events/s",
                rate,
                "events published",
                goal=">= 0.95",
            )
        )
        figures.append(
            figure(
                "GET /metrics p50 under that load", _percentile(loaded["scrapes"], 0.5) * 1000, "ms"
            )
        )
        figures.append(
            figure(
                "GET /metrics p99 under that load",
                _percentile(loaded["scrapes"], 0.99) * 1000,
                "ms",
                goal="< 50 ms",
            )
        )

    outcome: List[Any] = []
    d = main()
    d.addBoth(outcome.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if outcome and hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return figures


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
