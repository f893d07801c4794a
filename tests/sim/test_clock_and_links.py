"""The simulator's parts: the heap clock (IReactorTime) and the links (latency,
bandwidth, one message after another, partitions)."""

from __future__ import annotations

import pytest
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from cheesecoin.sim.clock import HeapClock
from cheesecoin.sim.link import Pipe, SimTransport


def test_calls_run_in_time_order_and_same_time_calls_in_scheduling_order() -> None:
    clock = HeapClock(100.0)
    assert IReactorTime.providedBy(clock)
    ran = []
    clock.callLater(3, ran.append, "c")
    clock.callLater(1, ran.append, "a1")
    clock.callLater(1, ran.append, "a2")
    clock.callLater(2, lambda: clock.callLater(0, ran.append, "b-then"))
    clock.advance(0.5)
    assert ran == [] and clock.seconds() == 100.5
    clock.advance(10)
    assert ran == ["a1", "a2", "b-then", "c"]
    assert clock.seconds() == 110.5 and clock.pending() == 0


def test_cancel_reset_delay_and_active() -> None:
    clock = HeapClock()
    ran = []
    a = clock.callLater(5, ran.append, "a")
    b = clock.callLater(5, ran.append, "b")
    c = clock.callLater(1, ran.append, "c")
    a.cancel()
    b.reset(10)  # now at 10
    c.delay(6)  # 1 -> 7
    assert clock.pending() == 2 and not a.active() and b.active()
    with pytest.raises(AlreadyCancelled):
        a.cancel()
    clock.advance(8)
    assert ran == ["c"] and b.getTime() == 10
    clock.advance(5)
    assert ran == ["c", "b"]
    with pytest.raises(AlreadyCalled):
        b.cancel()
    assert clock.getDelayedCalls() == []


def test_a_looping_call_runs_on_it_and_a_failing_call_is_counted_not_raised() -> None:
    clock = HeapClock()
    ticks = []
    loop = LoopingCall(lambda: ticks.append(clock.seconds()))
    loop.clock = clock
    loop.start(5, now=True)
    clock.callLater(7, lambda: 1 / 0)
    clock.advance(21)
    assert ticks == [0, 5, 10, 15, 20]
    assert clock.failures == 1 and "ZeroDivisionError" in clock.first_failure


class Sink:
    def __init__(self, clock):
        self.clock = clock
        self.got = []
        self.lost = None

    def dataReceived(self, data):
        self.got.append((round(self.clock.seconds(), 6), data))

    def connectionLost(self, reason):
        self.lost = (round(self.clock.seconds(), 6), reason.type.__name__)


def link(clock, latency=0.05, rate=1000.0, reachable=None):
    ab = Pipe(clock, latency, rate, ("a", "b"), reachable)
    ba = Pipe(clock, latency, rate, ("b", "a"), reachable)
    ta = SimTransport(ab, ("10.0.0.1", 1), ("10.0.0.2", 2))
    tb = SimTransport(ba, ("10.0.0.2", 2), ("10.0.0.1", 1))
    ta.other, tb.other = tb, ta
    ab.receiver, ba.receiver = tb, ta
    sa, sb = Sink(clock), Sink(clock)
    ta.protocol, tb.protocol = sa, sb
    return ta, tb, sa, sb


def test_a_link_is_a_queue_with_latency_and_bandwidth() -> None:
    clock = HeapClock()
    ta, tb, sa, sb = link(clock, latency=0.05, rate=1000.0)  # 1,000 bytes a second
    ta.write(b"x" * 100)  # leaves at 0.1 s, arrives 0.15 s
    ta.write(b"y" * 100)  # waits for the first: leaves at 0.2 s, arrives 0.25 s
    clock.advance(0.149)
    assert sb.got == []
    clock.advance(0.2)
    assert sb.got == [(0.15, b"x" * 100), (0.25, b"y" * 100)]
    assert ta.getPeer().host == "10.0.0.2" and tb.getHost().port == 2
    tb.write(b"z")  # the other direction has its own queue
    clock.advance(1)
    assert sa.got == [(0.4, b"z")]  # written at 0.349 s, 1 ms to send, 50 ms on the way


def test_what_arrives_together_is_delivered_in_one_piece_and_a_close_follows_the_data() -> None:
    clock = HeapClock()
    ta, tb, sa, sb = link(clock, latency=0.05, rate=0)  # no bandwidth limit
    ta.write(b"one\n")
    ta.write(b"two\n")
    ta.loseConnection()
    clock.advance(1)
    assert sb.got == [(0.05, b"one\ntwo\n")]
    assert sb.lost == (0.05, "ConnectionDone") and sa.lost == (0.05, "ConnectionDone")
    ta.write(b"late")
    clock.advance(1)
    assert len(sb.got) == 1


def test_an_abort_is_heard_one_latency_later_and_drops_what_was_queued() -> None:
    clock = HeapClock()
    ta, tb, sa, sb = link(clock, latency=0.05, rate=100.0)
    ta.write(b"x" * 100)  # would arrive at 1.05 s
    clock.advance(0.5)
    ta.abortConnection()
    assert sa.lost == (0.5, "ConnectionAborted")
    clock.advance(2)
    assert sb.got == [] and sb.lost == (0.55, "ConnectionDone")


def test_a_partition_holds_what_was_sent_until_it_heals() -> None:
    clock = HeapClock()
    cut = {"on": True}
    ta, tb, sa, sb = link(clock, latency=0.05, rate=0, reachable=lambda a, b: not cut["on"])
    ta.write(b"held")
    clock.advance(10)
    assert sb.got == []
    cut["on"] = False
    clock.advance(1.5)
    assert [data for _, data in sb.got] == [b"held"]


def test_bytes_are_counted_by_type_and_an_empty_send_is_no_message() -> None:
    from collections import Counter

    clock = HeapClock()
    counts: Counter = Counter()
    pipe = Pipe(clock, 0.05, 0, ("a", "b"), None, counts)
    sink = Sink(clock)
    receiver = SimTransport(pipe, ("10.0.0.2", 2), ("10.0.0.1", 1))
    receiver.protocol = sink
    pipe.receiver = receiver
    pipe.send(b"")  # nothing to send: not counted, nothing scheduled
    assert counts == Counter() and clock.held() == 0 and pipe.seq < 0
    pipe.send(b'{"type":"PING","id":1}\n')
    pipe.send(b'{"type":"PONG","id":1}\n')
    pipe.send(b"not a message\n")
    assert counts == Counter({"PING": 23, "PONG": 23, "?": 14}) and pipe.bytes == 60
    assert clock.held() == 1  # one arrival scheduled for what is in flight
    clock.advance(1)
    assert [data.count(b"\n") for _, data in sink.got] == [3]  # arrived together


def test_a_line_relayed_to_many_pipes_is_counted_on_each_by_its_own_type() -> None:
    from collections import Counter

    clock = HeapClock()
    counts: Counter = Counter()
    pipes = [Pipe(clock, 0.05, 0, ("a", peer), None, counts) for peer in "bcd"]
    relayed, other = b'{"type":"ANNOUNCE_HEADER","header":{}}\n', b'{"type":"PING","id":2}\n'
    for pipe in pipes:  # one bytes object written to each (the relay's way)
        pipe.send(relayed)
    pipes[0].send(other)
    pipes[1].send(relayed)
    pipes[2].send(bytes(bytearray(other)))  # an equal line, another object
    assert counts == Counter({"ANNOUNCE_HEADER": 4 * len(relayed), "PING": 2 * len(other)})
