"""Benchmark of mining: hash rates against a plain hashlib loop, and the reactor's latency.

Measured in one run, on this machine:

- the raw limits: a plain ``hashlib.sha1(prefix + nonce).digest()`` loop on
  one core, and the same loop in one process per core at once; and the
  SHA-1 compression limit, ``hashlib.sha1`` over a 16 MiB buffer / 64 bytes
  per block, in one process per core at once (a nonce costs one compression
  after the midstate: the most any miner can do here);
- the built-in miner on every core with the native search (SHA-NI where the
  CPU has it) against that limit (goal >= 0.5), and the same miner forced to
  the portable C search and to the pure-Python search (``CHEESECOIN_POW``);
- ``search_nonce`` on one thread (the midstate inner loop);
- the built-in miner (``MiningService``, every core: worker processes) on a
  real member node whose difficulty is set out of reach, so it hashes
  without ever restarting; ratio against the plain all-core loop (goal
  >= 0.9) and against our single-thread search (goal >= 1.8 on 2 cores);
- the external miner (``ExternalMiner``, the core of ``cheesecoin mine``,
  N processes) mining WORK from a real ``MinerPortFactory`` over TCP;
- the reactor's PING round trip (p50 and max) on a JSON-line server in the
  miner's process while the built-in miner runs with processes, then with
  its single thread (which shares Python's interpreter lock).

    .venv/bin/python bench/bench_mining.py [--quick]
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import figure, print_table  # noqa: E402
from common import percentile as _percentile
from common import pinger as _pinger

from cheesecoin.core.cheese import preimage_prefix  # noqa: E402
from cheesecoin.core.pow import NONCE_LIMIT, search_nonce  # noqa: E402

PREFIX = preimage_prefix("ab" * 20, 123, 1795300000, 24, "cd" * 20)
UNREACHABLE_BITS = 64  # no nonce is found in a benchmark's lifetime


def plain_loop(seconds: float) -> float:
    """Hashes per second of the plainest SHA1 loop over preimages (one core)."""
    sha1 = hashlib.sha1
    prefix = PREFIX.encode("ascii")
    n = 10**12
    done = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for i in range(n, n + 20_000):
            sha1(prefix + b"%d" % i).digest()
        n += 20_000
        done += 20_000
    return done / (time.perf_counter() - started)


def plain_all_cores(seconds: float, cores: int, rounds: int) -> float:
    """The plain loop in ``cores`` processes at once: the best of ``rounds`` windows.

    Plain subprocesses, each reaped here (a multiprocessing pool leaves its
    resource tracker to be reaped by init after we exit).
    """
    command = [sys.executable, os.path.abspath(__file__), "--plain", str(seconds), str(rounds)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(cores)]
    rates = [json.loads(proc.communicate()[0]) for proc in procs]
    return max(sum(r[i] for r in rates) for i in range(rounds))


def compress_loop(seconds: float) -> float:
    """SHA-1 compressions per second of hashlib over a large buffer (one core)."""
    buf = b"\x5a" * (16 * 1024 * 1024)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        hashlib.sha1(buf).digest()
        done += len(buf) // 64
    return done / (time.perf_counter() - started)


def compress_all_cores(seconds: float, cores: int, rounds: int) -> float:
    """The compression loop in ``cores`` processes at once: the best of ``rounds`` windows."""
    command = [sys.executable, os.path.abspath(__file__), "--compress", str(seconds), str(rounds)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(cores)]
    rates = [json.loads(proc.communicate()[0]) for proc in procs]
    return max(sum(r[i] for r in rates) for i in range(rounds))


def search_single(seconds: float) -> float:
    """Hashes per second of search_nonce on this thread."""
    done = [0]
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    search_nonce(
        PREFIX,
        UNREACHABLE_BITS,
        10**12,
        NONCE_LIMIT,
        lambda: time.perf_counter() > deadline,
        4096,
        lambda n: done.__setitem__(0, done[0] + n),
    )
    return done[0] / (time.perf_counter() - started)


# -- the reactor part ---------------------------------------------------------------------------


def reactor_figures(
    seconds: float, rounds: int, cores: int, plain_all: float, single: float, compress_all: float
) -> List[Dict[str, Any]]:
    from twisted.internet import defer, reactor
    from twisted.internet.protocol import Factory
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    from cheesecoin.cli.mine import Console, ExternalMiner
    from cheesecoin.core.node import MemberNode
    from cheesecoin.core.stack import CheeseStack
    from cheesecoin.mining.port import MinerPortFactory
    from cheesecoin.mining.service import MiningService
    from cheesecoin.testing.chain import make_network
    from cheesecoin.wire.lineproto import JsonLineProtocol

    class Ping(JsonLineProtocol):
        def msg_PING(self, msg: dict) -> None:
            self.reply(msg, {"type": "PONG"})

    def new_node() -> MemberNode:
        node = MemberNode(CheeseStack(make_network("bench", bits=1)))
        node.stack.next_bits = lambda parent: UNREACHABLE_BITS  # type: ignore[method-assign]
        return node

    figures: List[Dict[str, Any]] = []
    address = "ab" * 32

    def sleep(t: float) -> defer.Deferred:
        return deferLater(reactor, t, lambda: None)

    @defer.inlineCallbacks
    def rate_of(meter: Any) -> Any:
        """The best of ``rounds`` windows of hashes counted by ``meter``."""
        yield sleep(1.0)  # workers start, import, report
        best = 0.0
        for _ in range(rounds):
            before, started = meter.total, time.perf_counter()
            yield sleep(seconds)
            best = max(best, (meter.total - before) / (time.perf_counter() - started))
        return best

    @defer.inlineCallbacks
    def main() -> Any:
        ping_port = (
            reactor.listenTCP(0, Factory.forProtocol(Ping), interface="127.0.0.1").getHost().port
        )
        for workers, label in ((cores, f"{cores} processes"), (1, "1 thread")):
            service = MiningService(new_node(), address, workers, reactor=reactor)
            service.startService()
            rtts: List[float] = []
            pinging = deferToThread(_pinger, ping_port, seconds * rounds + 1.0, rtts)
            rate = yield rate_of(service.meter)
            yield pinging
            yield service.stopService()
            if workers == cores:
                figures.append(
                    figure(
                        f"built-in miner, {label}",
                        rate,
                        "H/s",
                        plain_all,
                        "plain hashlib, all cores",
                        goal=">= 0.9",
                    )
                )
                figures.append(
                    figure(
                        f"built-in miner, {label}, vs our single thread",
                        rate,
                        "H/s",
                        single,
                        "search_nonce, 1 thread",
                        goal=">= 1.8 on 2 cores" if cores == 2 else "",
                    )
                )
            else:
                figures.append(
                    figure(
                        f"built-in miner, {label}", rate, "H/s", single, "search_nonce, 1 thread"
                    )
                )
            figures.append(
                figure(
                    f"reactor PING p50 while mining ({label})", _percentile(rtts, 0.5) * 1000, "ms"
                )
            )
            figures.append(
                figure(
                    f"reactor PING max while mining ({label})",
                    max(rtts) * 1000,
                    "ms",
                    goal="< 100 ms",
                )
            )
        from cheesecoin.core.pow import POW_ENV, backend

        native = backend()
        figures.append(
            figure(
                f"built-in miner, {cores} processes ({native} search), "
                "vs the SHA-1 compression limit",
                figures[0]["value"],
                "H/s",
                compress_all,
                f"hashlib compressions, {cores} cores",
                goal=">= 0.5",
            )
        )
        for forced, label in (("portable", "portable C"), ("python", "pure Python")):
            os.environ[POW_ENV] = forced  # the worker processes inherit it
            try:
                service = MiningService(new_node(), address, cores, reactor=reactor)
                service.startService()
                rate = yield rate_of(service.meter)
                yield service.stopService()
            finally:
                del os.environ[POW_ENV]
            figures.append(
                figure(
                    f"built-in miner, {cores} processes, {label} search",
                    rate,
                    "H/s",
                    compress_all,
                    f"hashlib compressions, {cores} cores",
                )
            )
        factory = MinerPortFactory(new_node(), address, clock=reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        miner = ExternalMiner(
            "127.0.0.1", port.getHost().port, cores, reactor, Console(io.StringIO(), tty=False)
        )
        miner.start()
        rate = yield rate_of(miner.meter)
        yield miner.stop()
        yield port.stopListening()
        figures.append(
            figure(
                f"external miner, {cores} processes",
                rate,
                "H/s",
                plain_all,
                "plain hashlib, all cores",
                goal=">= 0.9",
            )
        )

    result: List[Any] = []
    d = main()
    d.addBoth(result.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if result and hasattr(result[0], "raiseException"):
        result[0].raiseException()
    return figures


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; return its figures."""
    # Rates are the best of a few windows: other work on the machine only ever lowers them.
    seconds, rounds = (1.0, 2) if quick else (2.0, 3)
    cores = os.cpu_count() or 1
    plain_one = max(plain_loop(seconds) for _ in range(rounds))
    plain_all = plain_all_cores(seconds, cores, rounds)
    single = max(search_single(seconds) for _ in range(rounds))
    compress_all = compress_all_cores(seconds, cores, rounds)
    figures = [
        figure(f"SHA-1 compressions (hashlib over 16 MiB), {cores} cores", compress_all, "/s"),
        figure("plain hashlib SHA1 loop, 1 core", plain_one, "H/s"),
        figure(
            f"plain hashlib SHA1 loop, {cores} cores", plain_all, "H/s", plain_one, "plain, 1 core"
        ),
        figure(
            "search_nonce, 1 thread", single, "H/s", plain_one, "plain hashlib, 1 core", goal=">= 1"
        ),
    ]
    return figures + reactor_figures(seconds, rounds, cores, plain_all, single, compress_all)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plain"]:  # one process of plain_all_cores
        plain_loop(0.2)
        print(json.dumps([plain_loop(float(sys.argv[2])) for _ in range(int(sys.argv[3]))]))
    elif sys.argv[1:2] == ["--compress"]:  # one process of compress_all_cores
        compress_loop(0.2)
        print(json.dumps([compress_loop(float(sys.argv[2])) for _ in range(int(sys.argv[3]))]))
    else:
        print_table(run(quick="--quick" in sys.argv[1:]))
