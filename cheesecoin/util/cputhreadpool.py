"""A dedicated thread pool for CPU-bound work (in the style of tahoe-lafs).

The reactor's own thread pool serves DNS lookups and other blocking calls;
CPU work (the nonce search) must not starve them, so it runs here, on a
``ThreadPool`` of at most one thread per core that is started when the
reactor runs and stopped when it shuts down.

A cancelled Deferred does not stop a thread: long work takes a
``StopToken`` and polls it (``search_nonce(..., should_stop=token)``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from cheesecoin.util.cores import usable_cores

T = TypeVar("T")

_pool: Optional[ThreadPool] = None
_pool_lock = threading.Lock()


class StopToken:
    """A cooperative stop flag shared with a worker thread (a ``threading.Event``).

    Call it (or read ``stopped``) from the worker; ``stop()`` from anywhere.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def stop(self) -> None:
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._event.wait(timeout)


def _stop_pool(pool: ThreadPool) -> None:
    if pool.started and not pool.joined:
        pool.stop()


def cpu_pool(reactor: Any) -> ThreadPool:
    """The process's CPU thread pool, created on first use and tied to ``reactor``."""
    global _pool
    with _pool_lock:
        if _pool is not None and not _pool.joined:
            return _pool
        pool = ThreadPool(minthreads=0, maxthreads=usable_cores(), name="cheesecoin-cpu")
        if reactor.running:
            pool.start()
        else:
            reactor.callWhenRunning(pool.start)
        reactor.addSystemEventTrigger("during", "shutdown", _stop_pool, pool)
        if hasattr(threading, "_register_atexit"):  # stop before interpreter shutdown joins threads
            threading._register_atexit(_stop_pool, pool)
        _pool = pool
        return pool


def defer_to_cpu(f: Callable[..., T], *args: Any, reactor: Any, **kwargs: Any) -> "Deferred[T]":
    """Run ``f(*args, **kwargs)`` on the CPU thread pool of ``reactor``; its result
    as a Deferred."""
    pool = cpu_pool(reactor)
    if not pool.started and reactor.running:  # pragma: no cover - started by callWhenRunning
        pool.start()
    return deferToThreadPool(reactor, pool, f, *args, **kwargs)
