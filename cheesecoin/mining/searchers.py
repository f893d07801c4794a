"""Nonce searchers: the proof of work never runs on the reactor thread.

- ``ThreadSearcher`` (one worker) runs ``search_nonce`` on the CPU thread
  pool (``cheesecoin.util.cputhreadpool``) with a ``StopToken`` it polls every
  4,096 hashes;
- ``ProcessSearcher`` (N workers) spawns N ``python -m cheesecoin.mining.worker``
  processes with ``reactor.spawnProcess`` and drives them with JSON lines on
  stdin, each on a disjoint nonce range. A new job line stops the old search
  at once; closing stdin ends a worker (so a worker whose parent dies, even
  by SIGKILL, exits too), and the reactor reaps it.

``HashMeter`` measures the hash rate of either.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, List, Optional, Tuple, Union

from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.pow import NONCE_LIMIT, search_nonce, split_range
from cheesecoin.mining.interfaces import MiningReactor
from cheesecoin.mining.jobs import Job
from cheesecoin.mining.worker import pipe_line, worker_command
from cheesecoin.util.cputhreadpool import StopToken, defer_to_cpu

FoundCallback = Callable[[Job, int, str], None]
Found = Tuple[Optional[int], Optional[str]]  # what search_nonce returns
STOP_TIMEOUT = 5.0  # seconds a worker process gets to exit before SIGKILL


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


class ThreadSearcher:
    """Searches one job at a time on the CPU thread pool, stopped by a StopToken."""

    log = Logger()

    def __init__(self, on_found: FoundCallback, meter: HashMeter, reactor: MiningReactor) -> None:
        self.on_found = on_found
        self.meter = meter
        self.reactor = reactor
        self._token: Optional[StopToken] = None
        self._running: "List[defer.Deferred[Found]]" = []
        self._shut = False

    def search(self, job: Job, start: int = 0) -> None:
        """Stop the current search (cooperatively) and search ``job`` from ``start``."""
        self.pause()
        token = self._token = StopToken()
        d = defer_to_cpu(
            search_nonce,
            job.prefix,
            job.bits,
            start,
            NONCE_LIMIT,
            token,
            4096,
            self._progress,
            reactor=self.reactor,
        )
        self._running.append(d)
        d.addBoth(self._done, d, job)

    def _progress(self, count: int) -> None:
        """Count, and let the reactor thread take the interpreter lock if it waits for it.

        Without this it waits up to the switch interval (5 ms), twice per request.
        """
        self.meter.add(count)
        time.sleep(0)

    def _done(self, result: Union[Found, Failure], d: "defer.Deferred[Found]", job: Job) -> None:
        self._running.remove(d)
        if isinstance(result, Failure):
            self.log.failure("The nonce search failed", result)
        else:
            nonce, smell = result
            if nonce is not None and smell is not None and not self._shut:
                self.on_found(job, nonce, smell)

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
    """One ``python -m cheesecoin.mining.worker`` worker: JSON lines both ways
    (see cheesecoin.mining.worker)."""

    log = Logger()

    def __init__(self, searcher: "ProcessSearcher", index: int) -> None:
        self.searcher = searcher
        self.index = index
        self.ended: "defer.Deferred[None]" = defer.Deferred()
        self.alive = False
        self._buffer = b""

    def connectionMade(self) -> None:
        self.alive = True

    def order(self, msg: dict) -> None:
        if self.alive and self.transport is not None:
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
        self.log.warn(
            "Mining worker {i}: {text}", i=self.index, text=data.decode("utf-8", "replace").rstrip()
        )

    def end(self, timeout: float) -> None:
        """Close stdin (the worker exits); SIGKILL it if it lingers."""
        if not self.alive or self.transport is None:
            return
        self.transport.closeStdin()
        kill = self.searcher.reactor.callLater(timeout, self._kill)
        self.ended.addBoth(lambda r: kill.cancel() if kill.active() else None)

    def _kill(self) -> None:
        try:
            if self.transport is not None:
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

    def __init__(
        self, workers: int, on_found: FoundCallback, meter: HashMeter, reactor: MiningReactor
    ) -> None:
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
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
            self.log.warn(
                "Mining worker {i} exited: {why}", i=proc.index, why=reason.getErrorMessage()
            )

    def shutdown(self, timeout: float = STOP_TIMEOUT) -> defer.Deferred:
        """End every worker process; fires once all have exited and been reaped."""
        self._shut = True
        for proc in self.procs:
            proc.end(timeout)
        return defer.DeferredList([p.ended for p in self.procs]).addCallback(lambda _: None)


def make_searcher(
    workers: int, on_found: FoundCallback, meter: HashMeter, reactor: MiningReactor
) -> Union[ThreadSearcher, ProcessSearcher]:
    """A thread for one worker, worker processes for more."""
    if workers <= 1:
        return ThreadSearcher(on_found, meter, reactor)
    return ProcessSearcher(workers, on_found, meter, reactor)
