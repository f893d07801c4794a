"""Simulated TCP connections: bytes delivered after latency plus size / bandwidth.

In the spirit of ``twisted.test.iosim`` and hathor-core's ``FakeConnection``,
but on a virtual clock and with a cost: each direction of a connection is a
``Pipe``, a queue. A write leaves when the pipe has finished sending what was
written before it (``size * 8 / bandwidth`` seconds each), and arrives one
one-way latency later; what arrives at the same moment is handed to the
protocol's ``dataReceived`` in one piece. With simulated CPU time
(``busy``: when each member is done validating, by member index), a write
leaves no earlier than its sender is done validating, and an arrival waits
until its receiver is: one CPU per member. While the two ends are cut off (a
partition) nothing arrives; what was sent waits, as TCP retransmits, and
arrives once they can reach each other again.

``SimTransport`` is what a protocol sees (ITransport, with the producer
calls the member's back-pressure makes); the network (``world``) makes the
connections and says which pairs are cut off.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, MutableSequence, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from cheesecoin.wire.lineproto import line_type

Reachable = Callable[[Any, Any], bool]  # (member a, member b) -> can they reach each other now?

# The last line counted by type and its type (``Pipe.depart``): the same object is
# written to each peer a line is relayed to, and its type is read once.
_TYPED: List[Any] = [None, "?"]


class Pipe:
    """One direction of a connection: a FIFO with a sending rate and a latency."""

    __slots__ = (
        "clock",
        "latency",
        "rate",
        "free_at",
        "queue",
        "seq",
        "receiver",
        "bytes",
        "ends",
        "reachable",
        "counts",
        "busy",
        "src",
        "dst",
    )

    def __init__(
        self,
        clock: Any,
        latency: float,
        rate: float,
        ends: Tuple[Any, Any],
        reachable: Optional[Reachable],
        counts: Optional[Dict[str, int]] = None,
        busy: Optional[MutableSequence[float]] = None,
    ) -> None:
        self.clock = clock
        self.latency = latency  # seconds
        self.rate = rate  # bytes per second (0: no limit)
        self.free_at = 0.0  # when the sender has finished pushing what it wrote so far
        # (arrival, bytes), in order: a list (a few entries at most; an empty
        # deque is ten times the size, times some 160,000 pipes at 10,000 members)
        self.queue: List[Tuple[float, bytes]] = []
        self.seq = -1  # >= 0 while an arrival is scheduled on the clock
        self.receiver: Optional["SimTransport"] = None
        self.bytes = 0
        self.ends = ends  # (sending member, receiving member): for the partition rule
        self.reachable = reachable
        self.counts = counts  # bytes sent by message type (the first line's), if given
        # With simulated CPU: every member's busy-until time, by index (a flat array
        # read at each write and arrival, not each member object: at 10,000 members
        # that was a cache miss a message); the ends' indexes into it.
        self.busy = busy
        self.src: int = ends[0].index if busy is not None else 0
        self.dst: int = ends[1].index if busy is not None else 0

    def send(self, data: bytes) -> None:
        """Queue ``data`` (the transport's ``write`` while the connection is open)."""
        if not data:
            return
        arrival = self.depart(data)
        self.queue.append((arrival, data))
        if self.seq < 0:
            self.clock.schedule(arrival, self)

    def depart(self, data: bytes) -> float:
        """``data`` leaves once what was written before it has (and, with simulated
        CPU, once its sender is done validating); returns when it arrives."""
        size = len(data)
        now = self.clock.now
        start = self.free_at if self.free_at > now else now
        busy = self.busy
        if busy is not None and busy[self.src] > start:
            start = busy[self.src]
        self.free_at = free_at = start + (size / self.rate if self.rate else 0.0)
        self.bytes += size
        counts = self.counts
        if counts is not None:
            # A relayed line is one bytes object written to many pipes: typed once.
            typed = _TYPED
            if typed[0] is not data:
                typed[0], typed[1] = data, line_type(data)
            counts[typed[1]] += size
        return free_at + self.latency

    def in_flight(self) -> bool:
        return bool(self.queue)

    def fire(self) -> None:
        """What was due has arrived (the clock calls this)."""
        queue, now = self.queue, self.clock.now
        if self.reachable is not None and not self.reachable(*self.ends):
            self.clock.schedule(now + 1.0, self)  # cut off: try again in a second
            return
        busy = self.busy
        if busy is not None and busy[self.dst] > now:
            self.clock.schedule(busy[self.dst], self)  # the receiver is still validating
            return
        if len(queue) == 1 and queue[0][0] <= now:  # the common case: one write in flight
            data = queue.pop()[1]
        else:
            due = 0
            for arrival, _ in queue:
                if arrival > now:
                    break
                due += 1
            data = b"".join([part for _, part in queue[:due]])
            del queue[:due]
            if queue:
                self.clock.schedule(queue[0][0], self)
        receiver = self.receiver
        if data and receiver is not None and receiver.connected:
            protocol = (
                receiver.protocol
            )  # SimTransport.deliver, inlined: this runs for every message
            if protocol is not None:
                protocol.dataReceived(data)

    def stop(self) -> None:
        self.queue.clear()
        self.clock.unschedule(self)


@implementer(ITransport)
class SimTransport:
    """One end of a simulated connection, as its protocol sees it."""

    # (slots: a run holds some 160,000 of them, and each message reads one)
    __slots__ = (
        "out",
        "other",
        "protocol",
        "_host",
        "_peer",
        "connected",
        "disconnecting",
        "producer",
        "remote",
    )

    def __init__(self, out: Pipe, host: Tuple[str, int], peer: Tuple[str, int]) -> None:
        self.out = out
        self.other: Optional["SimTransport"] = None
        self.protocol: Any = None
        self._host = IPv4Address("TCP", *host)
        self._peer = IPv4Address("TCP", *peer)
        self.connected = True
        self.disconnecting = False
        self.producer: Any = None
        self.remote: Any = None  # the member at the other end (the world sets it)

    # ITransport
    def write(self, data: bytes) -> None:
        if self.connected and not self.disconnecting and data:
            self.out.send(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close once what was written has arrived (a FIN after the data)."""
        if not self.connected or self.disconnecting:
            return
        self.disconnecting = True
        clock = self.out.clock
        delay = max(self.out.free_at, clock.now) + self.out.latency - clock.now
        clock.callLater(delay, self._finish, ConnectionDone)

    def abortConnection(self) -> None:
        """Close now; the other end hears of it one latency later (a RST)."""
        if not self.connected:
            return
        self.out.stop()
        other = self.other
        self._lost(ConnectionAborted)
        if other is not None and other.connected:
            other.out.stop()
            self.out.clock.callLater(self.out.latency, other._lost, ConnectionDone)

    def _finish(self, why: Any) -> None:
        other = self.other
        self._lost(why)
        if other is not None and other.connected:
            other._lost(why)

    def _lost(self, why: Any) -> None:
        if not self.connected:
            return
        self.connected = False
        self.out.stop()
        self.out.receiver = None
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(Failure(why()))

    def deliver(self, data: bytes) -> None:
        """Bytes from the other end (the pipe towards us)."""
        if self.connected and self.protocol is not None:
            self.protocol.dataReceived(data)

    def getPeer(self) -> IPv4Address:
        return self._peer

    def getHost(self) -> IPv4Address:
        return self._host

    # IConsumer / IPushProducer: the simulated buffers never fill, so nothing is paused.
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.loseConnection()
