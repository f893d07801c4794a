"""The built-in miner: templates, nonce searchers off the reactor thread, and the service.

``make_template``/``make_job`` build a candidate child of the best tip
(docs/protocol.md s.3: ``next_bits``, mempool transactions by fee, the miner's
address, timestamp max(now, parent's)). ``TemplateFeed`` tells its owner
when that candidate changes: on the next reactor turn for a new tip (so a
burst of cheeses during a download costs one restart), at most every
``tx_delay`` seconds for new transactions.

The nonce search never runs on the reactor thread:

- ``ThreadSearcher`` (one worker) runs ``search_nonce`` on the CPU thread
  pool (``cheesecoin.cputhreadpool``) with a ``StopToken`` it polls every
  4,096 hashes;
- ``ProcessSearcher`` (N workers) spawns N ``python -m cheesecoin.pow``
  processes with ``reactor.spawnProcess`` and drives them with JSON lines on
  stdin, each on a disjoint nonce range. A new job line stops the old search
  at once; closing stdin ends a worker (so a worker whose parent dies, even
  by SIGKILL, exits too), and the reactor reaps it.

``MiningService`` ties them to a member: it restarts the search on every
template change and submits a found cheese with
``node.submit_cheese(cheese, source="miner")`` only if its parent is still
the best tip (never a stale cheese).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .cheese import info_hash, preimage_prefix, sha1_hex
from .cputhreadpool import StopToken, defer_to_cpu
from .errors import BadMessage, InvalidCheese
from .pow import NONCE_LIMIT, pipe_line, search_nonce, split_range, worker_command
from .storage import StorageError

FoundCallback = Callable[["Job", int, str], None]

# Searches start at a random nonce below this, so that the built-in miner and
# external miners mining the same template do not repeat each other's work.
_START_SPREAD = 2**63
STOP_TIMEOUT = 5.0  # seconds a worker process gets to exit before SIGKILL


# -- templates ---------------------------------------------------------------------


def make_template(node: Any, miner_address: str) -> dict:
    """A candidate child of the best tip, without nonce and smell."""
    txs = node.mempool.select(node.network.max_transactions)
    return node.stack.template(miner_address, txs, timestamp=int(node.clock()))


@dataclass(frozen=True)
class Job:
    """A candidate cheese to mine and the smell preimage up to its nonce."""

    job_id: Any
    cheese: dict  # the candidate, without nonce and smell
    prefix: str
    bits: int

    @property
    def parent_smell(self) -> str:
        return self.cheese["parent_smell"]

    @property
    def height(self) -> int:
        return self.cheese["sequence_number"]

    def complete(self, nonce: int) -> dict:
        """The candidate with ``nonce`` and its smell (which may miss the target)."""
        return dict(self.cheese, nonce=nonce, smell=sha1_hex((self.prefix + str(nonce)).encode("ascii")))

    def work_message(self) -> dict:
        """The WORK message of docs/protocol.md section 6."""
        return {"type": "WORK", "job": self.job_id, "prefix": self.prefix, "bits": self.bits, "cheese": self.cheese}


def get_job_id(msg: dict) -> Any:
    """The ``job`` field of WORK or SUBMIT: a string or an integer, else BadMessage."""
    job_id = msg.get("job")
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
        raise BadMessage("field 'job' must be a string or an integer")
    if isinstance(job_id, int) and not 0 <= job_id < 2**63:  # docs/protocol.md section 1's integer range
        raise BadMessage("field 'job' must be an integer from 0 to 2^63 - 1")
    if isinstance(job_id, str) and len(job_id) > 64:
        raise BadMessage("field 'job' must be at most 64 characters")
    return job_id


def job_for(job_id: Any, cheese: dict) -> Job:
    """A Job for a candidate cheese."""
    prefix = preimage_prefix(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        cheese["bits"],
        info_hash(cheese["unit_of_information"]),
    )
    return Job(job_id, cheese, prefix, cheese["bits"])


def make_job(node: Any, miner_address: str, job_id: Any) -> Job:
    """A Job on a fresh template of ``node``."""
    return job_for(job_id, make_template(node, miner_address))


def random_start() -> int:
    """Where a search begins in the nonce space (random, leaving 2^63 nonces after it)."""
    return random.randrange(_START_SPREAD)


class TemplateFeed:
    """Calls ``on_change()`` when a member's mining template changes.

    A new tip: on the next reactor turn (a burst of tip changes is one call).
    New transactions: after ``tx_delay`` seconds (a burst is one call, and a
    steady stream restarts at most once per ``tx_delay``).
    """

    def __init__(self, node: Any, on_change: Callable[[], None], clock: Any, tx_delay: float = 0.5) -> None:
        self.node = node
        self.on_change = on_change
        self.clock = clock
        self.tx_delay = tx_delay
        self._call: Any = None
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.node.tip_listeners.append(self._tip_changed)
            self.node.tx_listeners.append(self._tx_added)

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.node.tip_listeners.remove(self._tip_changed)
            self.node.tx_listeners.remove(self._tx_added)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tip_changed(self, result: Any, source: Any) -> None:
        self._schedule(0)

    def _tx_added(self, tx_id: str, tx: dict, source: Any) -> None:
        self._schedule(self.tx_delay)

    def _schedule(self, delay: float) -> None:
        if self._call is not None and self._call.active():
            if self._call.getTime() <= self.clock.seconds() + delay:
                return
            self._call.cancel()
        self._call = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        if self.started:
            self.on_change()


# -- measuring ---------------------------------------------------------------------------


class HashMeter:
    """Counts SHA1 evaluations; ``rate()`` is per second over the last ``window`` seconds.

    ``add`` may be called from any thread.
    """

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.total = 0
        self._samples: Deque[Tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._since = clock()

    def restart(self) -> None:
        """Forget the samples (mining starts now)."""
        with self._lock:
            self._samples.clear()
            self._since = self.clock()

    def add(self, count: int) -> None:
        now = self.clock()
        with self._lock:
            self.total += count
            self._samples.append((now, count))
            self._prune(now)

    def _prune(self, now: float) -> None:
        samples = self._samples
        while samples and samples[0][0] < now - self.window:
            samples.popleft()

    def rate(self) -> float:
        now = self.clock()
        with self._lock:
            self._prune(now)
            count = sum(n for _, n in self._samples)
        span = min(self.window, now - self._since)
        return count / span if span > 0 else 0.0


# -- searchers ------------------------------------------------------------------------------


class ThreadSearcher:
    """Searches one job at a time on the CPU thread pool, stopped by a StopToken."""

    log = Logger()

    def __init__(self, on_found: FoundCallback, meter: HashMeter, reactor: Any) -> None:
        self.on_found = on_found
        self.meter = meter
        self.reactor = reactor
        self._token: Optional[StopToken] = None
        self._running: List[defer.Deferred] = []
        self._shut = False

    def search(self, job: Job, start: int = 0) -> None:
        """Stop the current search (cooperatively) and search ``job`` from ``start``."""
        self.pause()
        token = self._token = StopToken()
        d = defer_to_cpu(
            search_nonce, job.prefix, job.bits, start, NONCE_LIMIT, token, 4096, self._progress, reactor=self.reactor
        )
        self._running.append(d)
        d.addBoth(self._done, d, job)

    def _progress(self, count: int) -> None:
        """Count, and let the reactor thread take the interpreter lock if it waits for it.

        Without this it waits up to the switch interval (5 ms), twice per request.
        """
        self.meter.add(count)
        time.sleep(0)

    def _done(self, result: Any, d: defer.Deferred, job: Job) -> None:
        self._running.remove(d)
        if isinstance(result, Failure):
            self.log.failure("The nonce search failed", result)
        elif result[0] is not None and not self._shut:
            self.on_found(job, result[0], result[1])

    def pause(self) -> None:
        if self._token is not None:
            self._token.stop()
            self._token = None

    def busy(self) -> int:
        """Searches still running in a thread."""
        return len(self._running)

    def shutdown(self) -> defer.Deferred:
        """Stop searching; fires once the thread has returned."""
        self._shut = True
        self.pause()
        return defer.DeferredList(list(self._running)).addCallback(lambda _: None)


class WorkerProcess(ProcessProtocol):
    """One ``python -m cheesecoin.pow`` worker: JSON lines both ways (see cheesecoin.pow)."""

    log = Logger()

    def __init__(self, searcher: "ProcessSearcher", index: int) -> None:
        self.searcher = searcher
        self.index = index
        self.ended = defer.Deferred()
        self.alive = False
        self._buffer = b""

    def connectionMade(self) -> None:
        self.alive = True

    def order(self, msg: dict) -> None:
        if self.alive:
            self.transport.write(pipe_line(msg))

    def outReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                self.log.warn("Mining worker {i} said {line!r}", i=self.index, line=line[:200])
                continue
            self.searcher.worker_said(msg)

    def errReceived(self, data: bytes) -> None:
        self.log.warn("Mining worker {i}: {text}", i=self.index, text=data.decode("utf-8", "replace").rstrip())

    def end(self, timeout: float) -> None:
        """Close stdin (the worker exits); SIGKILL it if it lingers."""
        if not self.alive:
            return
        self.transport.closeStdin()
        kill = self.searcher.reactor.callLater(timeout, self._kill)
        self.ended.addBoth(lambda r: kill.cancel() if kill.active() else None)

    def _kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")
        except (ProcessExitedAlready, OSError):
            pass

    def processEnded(self, reason: Failure) -> None:
        self.alive = False
        self.searcher.worker_ended(self, reason)
        self.ended.callback(None)


class ProcessSearcher:
    """Searches one job at a time on ``workers`` worker processes, each on its own range."""

    log = Logger()

    def __init__(self, workers: int, on_found: FoundCallback, meter: HashMeter, reactor: Any) -> None:
        self.workers = max(1, workers)
        self.on_found = on_found
        self.meter = meter
        self.reactor = reactor
        self.procs: List[WorkerProcess] = []
        self._jobs: "OrderedDict[int, Job]" = OrderedDict()  # recent orders, by order number
        self._orders = itertools.count(1)
        self._shut = False

    def _spawn(self, index: int) -> WorkerProcess:
        proto = WorkerProcess(self, index)
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        argv = worker_command()
        self.reactor.spawnProcess(proto, argv[0], argv, env=env)
        return proto

    def search(self, job: Job, start: int = 0) -> None:
        """Send every worker its part of ``job``'s nonces from ``start`` (a restart)."""
        if self._shut:
            return
        self.procs = [p if p.alive else self._spawn(i) for i, p in enumerate(self.procs)]
        while len(self.procs) < self.workers:
            self.procs.append(self._spawn(len(self.procs)))
        key = next(self._orders)
        self._jobs[key] = job
        while len(self._jobs) > 8:
            self._jobs.popitem(last=False)
        for proc, (lo, hi) in zip(self.procs, split_range(self.workers, start)):
            proc.order({"job": key, "prefix": job.prefix, "bits": job.bits, "start": lo, "end": hi})

    def pause(self) -> None:
        """Stop searching; the workers wait for the next job."""
        for proc in self.procs:
            proc.order({"job": None})

    def busy(self) -> int:
        """Worker processes still alive."""
        return sum(1 for p in self.procs if p.alive)

    def worker_said(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        if isinstance(msg.get("hashes"), int):
            self.meter.add(msg["hashes"])
        elif "nonce" in msg:
            job = self._jobs.get(msg.get("job"))  # type: ignore[arg-type]
            if job is not None and not self._shut:
                self.on_found(job, msg["nonce"], msg["smell"])

    def worker_ended(self, proc: WorkerProcess, reason: Failure) -> None:
        if not self._shut:
            self.log.warn("Mining worker {i} exited: {why}", i=proc.index, why=reason.getErrorMessage())

    def shutdown(self, timeout: float = STOP_TIMEOUT) -> defer.Deferred:
        """End every worker process; fires once all have exited and been reaped."""
        self._shut = True
        for proc in self.procs:
            proc.end(timeout)
        return defer.DeferredList([p.ended for p in self.procs]).addCallback(lambda _: None)


def make_searcher(workers: int, on_found: FoundCallback, meter: HashMeter, reactor: Any) -> Any:
    """A thread for one worker, worker processes for more."""
    if workers <= 1:
        return ThreadSearcher(on_found, meter, reactor)
    return ProcessSearcher(workers, on_found, meter, reactor)


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# -- the service ---------------------------------------------------------------------------


class MiningService(Service):
    """Mines on a member's best tip with ``workers`` workers (0: every core).

    Sets ``node.miner``: ``mining`` and ``hashrate()`` are read by the API.
    """

    log = Logger()

    def __init__(
        self, node: Any, miner_address: str, workers: int = 0, reactor: Any = None, tx_delay: float = 0.5
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.node = node
        self.miner_address = miner_address
        self.workers = workers if workers > 0 else cpu_count()
        self.reactor = reactor
        self.meter = HashMeter()
        self.feed = TemplateFeed(node, self._template_changed, reactor, tx_delay)
        self.searcher: Any = None
        self.job: Optional[Job] = None
        self.mined = 0
        self._ids = itertools.count(1)
        node.miner = self

    @property
    def mining(self) -> bool:
        return bool(self.running)

    def hashrate(self) -> float:
        """SHA1 evaluations per second over the last few seconds."""
        return self.meter.rate()

    def startService(self) -> None:
        super().startService()
        self.meter.restart()
        self.searcher = make_searcher(self.workers, self._found, self.meter, self.reactor)
        self.feed.start()
        kind = "thread" if self.workers == 1 else "processes"
        self.log.info(
            "Mining for {address} with {n} worker {kind}", address=self.miner_address, n=self.workers, kind=kind
        )
        self._template_changed()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self.feed.stop()
        self.job = None
        searcher, self.searcher = self.searcher, None
        if searcher is None:
            return defer.succeed(None)
        return searcher.shutdown()

    def _template_changed(self) -> None:
        if not self.running or self.searcher is None:
            return
        self.job = make_job(self.node, self.miner_address, next(self._ids))
        self.searcher.search(self.job, random_start())

    def _found(self, job: Job, nonce: int, smell: str) -> None:
        tip = self.node.stack.tip
        if job.parent_smell != tip.smell:
            self.log.info(
                "Dropped a stale cheese {height} {smell}: the tip moved", height=job.height, smell=smell
            )
            return
        cheese = job.complete(nonce)
        if cheese["smell"] != smell:  # pragma: no cover - a broken worker
            self.log.error("A worker reported smell {smell} for nonce {nonce}, not {real}", smell=smell, nonce=nonce, real=cheese["smell"])
            return
        try:
            self.node.submit_cheese(cheese, source="miner")
        except InvalidCheese as e:
            self.log.warn("Our own cheese {height} was refused: {why}", height=job.height, why=e.message)
            self._template_changed()
            return
        except StorageError:  # the node reports it (once) and the member stops
            return
        self.mined += 1
        self.log.info("Mined cheese {height} {smell}", height=job.height, smell=smell)
