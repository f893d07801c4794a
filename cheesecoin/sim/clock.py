"""A virtual clock for thousands of members: Twisted's ``IReactorTime`` on a calendar.

``twisted.internet.task.Clock`` keeps its calls in a list that it sorts on
every ``callLater``: fine for a test, quadratic for a simulator that holds
hundreds of thousands of pending calls (every member's timers, every
message in flight). ``HeapClock`` keeps them in order of (time, order of
scheduling), as a binary heap would (hathor-core's simulator clock is
one), but a heap of a hundred thousand entries spread over gigabytes of
members costs a cache miss at each of its levels: at 10,000 members most
of a pop. So the calls are kept on a calendar: one bucket per simulated
millisecond. The calls of the bucket being run are a small heap; a later
bucket's calls are an unsorted list, made a heap when its turn comes; the
buckets that hold calls are a heap of their numbers. The order is the
heap's, exactly: a call is run after every call due before it, and calls
due at the same time run in the order they were scheduled, so a run is
deterministic (and the same run as on one heap). A cancelled or reset call
stays where it was and is skipped when it comes up.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any, Callable, Dict, List, Optional, Tuple

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


Entry = Tuple[float, int, Any]  # (time, order of scheduling, HeapCall or link)

BUCKETS_PER_SECOND = 1000  # the calendar's resolution: a bucket a simulated millisecond
FAR = 2**62  # the bucket of a time too large to have one (infinite): after every other


def bucket_of(time: float) -> int:
    """The calendar's bucket of ``time`` (rises with it, never falls)."""
    try:
        return int(time * BUCKETS_PER_SECOND)
    except (OverflowError, ValueError):  # an infinite time (or NaN): after every finite one
        return FAR


@implementer(IReactorTime)
class HeapClock:
    """IReactorTime on a calendar of small heaps; ``advance`` and ``run_until`` move
    time forward."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        # The bucket being run (or the last one run) and its calls: every call of a
        # bucket up to this one is in _heap, every later call in _later, under its
        # bucket's number; _buckets is a heap of _later's keys.
        self._bucket = bucket_of(self.now)
        self._heap: List[Entry] = []
        self._later: Dict[int, List[Entry]] = {}
        self._buckets: List[int] = []
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
        return [
            c
            for _, seq, c in sorted(self._entries())
            if c.__class__ is HeapCall and c.seq == seq and c.active()
        ]

    def _entries(self) -> List[Entry]:
        return self._heap + [e for bucket in self._later.values() for e in bucket]

    def held(self) -> int:
        """Entries on the calendar: live calls and links' arrivals, and the cancelled or
        reset ones not yet skipped."""
        return len(self._heap) + sum(len(bucket) for bucket in self._later.values())

    def _push(self, call: HeapCall) -> None:
        self._counter += 1
        call.seq = self._counter
        self._enter((call.time, self._counter, call))

    def _enter(self, entry: Entry) -> None:
        """Put ``entry`` in its bucket (in the heap being run if it is due by its end)."""
        bucket = bucket_of(entry[0])
        if bucket <= self._bucket:
            heappush(self._heap, entry)
            return
        calls = self._later.get(bucket)
        if calls is None:
            self._later[bucket] = [entry]
            heappush(self._buckets, bucket)
        else:
            calls.append(entry)

    def schedule(self, when: float, target: Any) -> None:
        """Run ``target.fire()`` at ``when``: the cheap path for the links, which
        schedule one arrival at a time (no IDelayedCall). ``target.seq`` is set
        here; changing it later (``unschedule``) drops the call."""
        self._counter += 1
        target.seq = self._counter
        self._enter((when, self._counter, target))

    @staticmethod
    def unschedule(target: Any) -> None:
        target.seq = -1

    def pending(self) -> int:
        """Calls scheduled and not yet run or cancelled."""
        return self._live

    def _next_bucket(self, last: Optional[int] = None) -> bool:
        """Make the next bucket holding calls (up to bucket ``last``) the one run; False
        if there is none."""
        if not self._buckets or (last is not None and self._buckets[0] > last):
            return False
        self._bucket = bucket = heappop(self._buckets)
        self._heap = heap = self._later.pop(bucket)
        heapify(heap)
        return True

    def next_time(self) -> Optional[float]:
        """When the next live call is due, or None."""
        while self._heap or self._next_bucket():
            time, seq, call = self._heap[0]
            if call.seq == seq and (call.__class__ is not HeapCall or call.active()):
                return time  # a live call, or a link's arrival
            heappop(self._heap)
        return None

    def run_until(self, when: float) -> None:
        """Run every call due up to ``when`` (in time order), then stand at ``when``."""
        last = bucket_of(when)
        while True:
            heap = self._heap  # re-read: a call run may have moved to the next bucket
            if not heap:
                if not self._next_bucket(last):
                    break
                heap = self._heap
            if heap[0][0] > when:
                break
            time, seq, call = heappop(heap)
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
