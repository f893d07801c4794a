"""A virtual clock on a heap: Twisted's ``IReactorTime`` for thousands of members.

``twisted.internet.task.Clock`` keeps its calls in a list that it sorts on
every ``callLater``: fine for a test, quadratic for a simulator that holds
hundreds of thousands of pending calls (every member's timers, every
message in flight). ``HeapClock`` keeps them in a binary heap (as
hathor-core's simulator clock does): ``callLater`` and each call cost
O(log n). A cancelled or reset call stays in the heap and is skipped when it
comes up. Calls due at the same time run in the order they were scheduled,
so a run is deterministic.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer


@implementer(IDelayedCall)
class HeapCall:
    """One scheduled call (IDelayedCall)."""

    __slots__ = ("clock", "time", "func", "args", "kw", "called", "cancelled", "seq")

    def __init__(
        self, clock: "HeapClock", time: float, func: Callable[..., Any], args: tuple, kw: dict
    ) -> None:
        self.clock = clock
        self.time = time
        self.func = func
        self.args = args
        self.kw = kw
        self.called = False
        self.cancelled = False
        self.seq = 0

    def getTime(self) -> float:
        return self.time

    def cancel(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()
        self.cancelled = True
        self.clock._live -= 1
        self.func = self.args = self.kw = None  # type: ignore[assignment]

    def delay(self, seconds: float) -> None:
        self.reset(self.time + seconds - self.clock.now)

    def reset(self, seconds: float) -> None:
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()
        self.time = self.clock.now + seconds
        self.clock._push(self)  # the old heap entry no longer matches its seq: skipped

    def active(self) -> bool:
        return not (self.called or self.cancelled)


@implementer(IReactorTime)
class HeapClock:
    """IReactorTime on a heap; ``advance`` and ``run_until`` move time forward."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        self._heap: List[Tuple[float, int, Any]] = []
        self._counter = 0
        self._live = 0  # scheduled calls not yet run or cancelled
        self.calls_run = 0
        self.failures = 0  # calls that raised (a reactor logs them and goes on; so do we)
        self.first_failure: Optional[str] = None

    # IReactorTime
    def seconds(self) -> float:
        return self.now

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> HeapCall:
        call = HeapCall(self, self.now + max(0.0, delay), callable, args, kwargs)
        self._live += 1
        self._push(call)
        return call

    def getDelayedCalls(self) -> List[HeapCall]:
        return [c for _, seq, c in self._heap if c.seq == seq and c.active()]

    def _push(self, call: HeapCall) -> None:
        self._counter += 1
        call.seq = self._counter
        heapq.heappush(self._heap, (call.time, self._counter, call))

    def schedule(self, when: float, target: Any) -> None:
        """Run ``target.fire()`` at ``when``: the cheap path for the links, which
        schedule one arrival at a time (no IDelayedCall). ``target.seq`` is set
        here; changing it later (``unschedule``) drops the call."""
        self._counter += 1
        target.seq = self._counter
        heapq.heappush(self._heap, (when, self._counter, target))

    @staticmethod
    def unschedule(target: Any) -> None:
        target.seq = -1

    def pending(self) -> int:
        """Calls scheduled and not yet run or cancelled."""
        return self._live

    def next_time(self) -> Optional[float]:
        """When the next live call is due, or None."""
        heap = self._heap
        while heap:
            _, seq, call = heap[0]
            if call.seq == seq and call.active():
                return call.time
            heapq.heappop(heap)
        return None

    def run_until(self, when: float) -> None:
        """Run every call due up to ``when`` (in time order), then stand at ``when``."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= when:
            time, seq, call = pop(heap)
            if call.seq != seq:
                continue
            if call.__class__ is not HeapCall:  # a link's arrival (schedule)
                self.now = time
                call.seq = -1
                try:
                    call.fire()
                except Exception as e:  # noqa: BLE001
                    self._failed(call.fire, e)
                continue
            if call.called or call.cancelled:
                continue
            self.now = time
            call.called = True
            self._live -= 1
            self.calls_run += 1
            func, args, kw = call.func, call.args, call.kw
            call.func = call.args = call.kw = None  # type: ignore[assignment]
            try:
                func(*args, **kw)
            except Exception as e:  # noqa: BLE001 - what a reactor does: note it, go on
                self._failed(func, e)
        if when > self.now:
            self.now = when

    def _failed(self, func: Any, e: Exception) -> None:
        self.failures += 1
        if self.first_failure is None:
            self.first_failure = f"{getattr(func, '__qualname__', func)}: {type(e).__name__}: {e}"

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)
