"""The clock's calendar (a bucket a simulated millisecond) runs calls in exactly the
order one heap of (time, order of scheduling) would: checked against such a heap on
random programs of calls that schedule, cancel and reset calls, with the clock moved
in steps that end inside, on and across the buckets' edges."""

from __future__ import annotations

import heapq
from typing import Any, List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from cheesecoin.sim.clock import HeapClock

# delays that land in the same bucket, on a bucket's edge, a few buckets on, seconds on
DELAYS = st.sampled_from([0.0, 0.0001, 0.0004, 0.001, 0.0015, 0.002, 0.02, 0.5, 1.0, 3.25])


class OneHeap:
    """The reference: every call on one heap of (time, order of scheduling)."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.heap: List[Tuple[float, int, Any]] = []
        self.counter = 0

    def call_later(self, delay: float, label: Any) -> list:
        self.counter += 1
        call = [self.now + max(0.0, delay), self.counter, label, True]
        heapq.heappush(self.heap, (call[0], call[1], call))
        return call

    def reset(self, call: list, delay: float) -> None:
        """As HeapClock's: a new entry; the old one no longer matches the call's order."""
        self.counter += 1
        call[0], call[1] = self.now + delay, self.counter
        heapq.heappush(self.heap, (call[0], call[1], call))

    def run_until(self, when: float, ran: list, program: "Program") -> None:
        while self.heap and self.heap[0][0] <= when:
            time, seq, call = heapq.heappop(self.heap)
            if call[1] != seq or not call[3]:
                continue
            call[3] = False
            self.now = time
            ran.append((time, call[2]))
            program.follow(self, call[2])
        self.now = max(self.now, when)


class Program:
    """What each call does when it runs: schedule more calls (by its label's rule)."""

    def __init__(self, rules: List[List[float]]) -> None:
        self.rules = rules

    def follow(self, clock: Any, label: Tuple[int, int]) -> None:
        depth, index = label
        if depth < 2:
            for j, delay in enumerate(self.rules[index % len(self.rules)]):
                self.schedule(clock, delay, (depth + 1, index * 7 + j))

    @staticmethod
    def schedule(clock: Any, delay: float, label: Any) -> Any:
        if isinstance(clock, OneHeap):
            return clock.call_later(delay, label)
        return clock.callLater(delay, clock.record, label)


@settings(max_examples=150, deadline=None)
@given(
    start=st.sampled_from([0.0, 1_800_000_000.0, 12.3456]),
    first=st.lists(DELAYS, min_size=1, max_size=12),
    rules=st.lists(st.lists(DELAYS, max_size=3), min_size=1, max_size=4),
    changes=st.lists(st.tuples(st.integers(0, 11), st.booleans(), DELAYS), max_size=6),
    steps=st.lists(st.sampled_from([0.0, 0.0003, 0.001, 0.0017, 0.02, 0.4, 2.0]), max_size=12),
)
def test_the_calendar_runs_calls_in_one_heaps_order(
    start: float,
    first: List[float],
    rules: List[List[float]],
    changes: List[Tuple[int, bool, float]],
    steps: List[float],
) -> None:
    program = Program(rules)
    ref, clock = OneHeap(start), HeapClock(start)
    ran_ref: list = []
    ran: list = []

    def record(label: Any) -> None:
        ran.append((clock.now, label))
        program.follow(clock, label)

    clock.record = record  # type: ignore[attr-defined]
    ref_calls = [program.schedule(ref, d, (0, i)) for i, d in enumerate(first)]
    calls = [program.schedule(clock, d, (0, i)) for i, d in enumerate(first)]
    for i, cancel, delay in changes:  # cancel or reset some of the first calls
        i %= len(first)
        if not calls[i].active():
            continue
        if cancel:
            calls[i].cancel()
            ref_calls[i][3] = False
        else:
            calls[i].reset(delay)
            ref.reset(ref_calls[i], delay)
    for step in steps + [10.0]:
        ref.run_until(ref.now + step, ran_ref, program)
        clock.advance(step)
        assert ran == ran_ref and clock.seconds() == ref.now
    assert clock.pending() == 0 and clock.next_time() is None


def test_a_call_due_before_the_bucket_being_run_runs_next() -> None:
    """A link arrival scheduled for now while a later bucket is loaded runs first."""
    clock = HeapClock(5.0)
    ran: list = []
    clock.callLater(0.0105, ran.append, "later bucket")
    clock.callLater(0.01, lambda: clock.callLater(0, ran.append, "now"))
    clock.advance(1)
    assert ran == ["now", "later bucket"]


def test_delayed_calls_are_the_live_calls_in_order_and_not_the_links() -> None:
    class Arrival:
        seq = -1

        def fire(self) -> None:
            pass

    clock = HeapClock()
    late = clock.callLater(2.5, lambda: None)
    soon = clock.callLater(0.0005, lambda: None)
    gone = clock.callLater(1, lambda: None)
    gone.cancel()
    clock.schedule(0.2, Arrival())
    assert clock.getDelayedCalls() == [soon, late]
    assert clock.held() == 4 and clock.pending() == 2
    assert clock.next_time() == 0.0005


def test_an_infinite_delay_is_after_every_other_and_next_time_sees_a_links_arrival() -> None:
    class Arrival:
        seq = -1
        fired = 0

        def fire(self) -> None:
            self.fired += 1

    clock = HeapClock(1_800_000_000.0)
    ran: list = []
    never = clock.callLater(float("inf"), ran.append, "never")
    clock.callLater(2, ran.append, "two")
    arrival = Arrival()
    clock.schedule(1_800_000_000.5, arrival)
    assert clock.next_time() == 1_800_000_000.5  # the link's arrival, not an error
    clock.advance(10)
    assert ran == ["two"] and arrival.fired == 1
    assert clock.getDelayedCalls() == [never] and clock.next_time() == float("inf")
    never.reset(1)  # from forever to a second from now
    clock.advance(1)
    assert ran == ["two", "never"]
