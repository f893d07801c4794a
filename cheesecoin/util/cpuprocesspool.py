"""Worker processes for CPU work that threads cannot spread over the cores.

An Ed25519 check takes ~55 µs in C (libsodium) with the GIL released, but the thread must
take the GIL back after each one; while the reactor thread runs Python (JSON,
the ledger, SQLite), a checking thread waits up to the interpreter's switch
interval (5 ms) for it, so checks in threads run several times slower than
alone exactly when a sync is busiest (``bench/bench_member.py``). A
``ProcessPoolExecutor`` of one process per usable core has no such queue.

The pool is started on first use (``forkserver``: the member has threads, so
it must not ``fork`` itself), stopped when ``reactor`` shuts down, and only
used when there are at least two cores. A result comes back to the reactor
thread with ``callFromThread``; a broken pool (a killed worker) is dropped,
so the next call starts a new one, and the caller may fall back to threads.
Each worker ends itself within WATCH_INTERVAL once the member is gone, however
it went (the pool's own shutdown does not reach workers of a killed member).
The workers' side (``util/cpuworker.py``) imports no Twisted: with
``warm_up`` the fork server imports it and the job's module once for all.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from cheesecoin.util.cores import usable_cores
from cheesecoin.util.cpuworker import WORKER_NICENESS  # noqa: F401 (tests' names)
from cheesecoin.util.cpuworker import member_gone as _member_gone  # noqa: F401 (tests' names)
from cheesecoin.util.cpuworker import start_worker as _start_worker

_pool: Optional[ProcessPoolExecutor] = None
_lock = threading.Lock()


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _shutdown(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def process_pool(reactor: Any) -> Optional[ProcessPoolExecutor]:
    """The process's worker pool, started on first use; None with one core."""
    global _pool
    workers = usable_cores()
    if workers < 2:
        return None
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=_context(),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
            reactor.addSystemEventTrigger("during", "shutdown", _shutdown, _pool)
        return _pool


def defer_to_processes(f: Callable[..., Any], *args: Any, reactor: Any) -> Deferred:
    """Run the picklable ``f(*args)`` in a worker process; its result as a Deferred
    (fired in the reactor thread). Fails with RuntimeError when there is no pool."""
    pool = process_pool(reactor)
    d: Deferred = Deferred()
    if pool is None:
        d.errback(RuntimeError("no worker processes on one core"))
        return d
    try:
        future = pool.submit(f, *args)
    except RuntimeError as e:  # broken or shut down: the next call starts a new pool
        _shutdown(pool)
        d.errback(e)
        return d

    def fire(done: Future) -> None:
        if done.cancelled():
            d.errback(RuntimeError("the worker pool was shut down"))
            return
        error = done.exception()
        if error is not None:
            if "Broken" in type(error).__name__:
                _shutdown(pool)
            d.errback(error)
        else:
            d.callback(done.result())

    future.add_done_callback(lambda done: reactor.callFromThread(fire, done))
    return d


def warm_up(reactor: Any, f: Callable[..., Any], *args: Any) -> None:
    """Start the workers now, from another thread (starting a process takes
    the fork server's round trip), each running ``f(*args)`` once so that it
    has imported what the real work needs: a sync is beginning, and they come
    up while the headers do."""
    with _lock:
        forkserver = _context().get_start_method() == "forkserver"
        if _pool is None and forkserver and f.__module__ != "__main__":
            # The fork server imports the job's module and the workers'
            # initializer's (neither imports Twisted) once, in the thread below (its first
            # worker waits for it there, not in the reactor thread), and every
            # worker forked from it starts ready, instead of each importing
            # them while the first bodies wait. No effect if it already runs.
            _context().set_forkserver_preload([_start_worker.__module__, f.__module__])
    pool = process_pool(reactor)
    if pool is None:
        return

    def start() -> None:
        try:
            for _ in range(usable_cores()):
                pool.submit(f, *args)
        except RuntimeError:  # broken or shut down: the next call starts a new pool
            _shutdown(pool)

    threading.Thread(target=start, name="cheesecoin-warm-up", daemon=True).start()
