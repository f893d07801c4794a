"""Simulated connections between members run by two workers of a parallel run.

In a parallel run (``cheesecoin.sim.parallel``) each worker process runs some
of the members; a connection whose ends are in different workers is cut in
the middle. Each worker holds its own end: a ``CrossTransport`` whose
outgoing direction is a ``CrossPipe`` (the sending half: it computes when
each write arrives, exactly as ``link.Pipe`` does, and hands the bytes to the
world to ship) and whose incoming direction is an ordinary ``link.Pipe``
that only receives (the arrivals the other worker shipped, fired on this
worker's clock, held back by this member's simulated CPU as any arrival is).

What crosses between the workers is a list of items, each due at a
simulated time at least one minimum latency after it was made (that is
what lets the workers run a window of that length apart):

- ``SYN`` (client, server members): a dial has reached the server;
- ``CONNECT`` (the dial, the client's port, refused?): the server's answer has
  reached the client;
- ``DATA`` (bytes): a write has arrived;
- ``FIN``: the other end closed once its writes had arrived (``loseConnection``);
- ``RST``: the other end aborted (``abortConnection``).
"""

from __future__ import annotations

from typing import Any, Tuple

from twisted.internet.error import ConnectionAborted, ConnectionDone

from cheesecoin.sim.link import Pipe, SimTransport

SYN, CONNECT, DATA, FIN, RST = range(5)

# (due at, kind, connection or dial, payload): what one worker ships to another
Item = Tuple[float, int, int, Any]


class CrossPipe(Pipe):
    """The sending half of one direction of a connection whose far end is in
    worker ``dest``: ``Pipe``'s timing (``depart``), then the bytes are shipped."""

    __slots__ = ("ship", "conn", "dest")

    def __init__(
        self,
        world: Any,
        latency: float,
        ends: Tuple[Any, Any],
        conn: int,
        dest: int,
    ) -> None:
        super().__init__(
            world.clock, latency, world._rate, ends, None, world.bytes_by_type, world.busy
        )
        self.ship = world.ship
        self.conn = conn
        self.dest = dest

    def send(self, data: bytes) -> None:
        if data:
            self.ship(self.dest, (self.depart(data), DATA, self.conn, data))


class CrossTransport(SimTransport):
    """This worker's end of a connection whose other end another worker runs."""

    __slots__ = ("cross_out", "world", "inbound", "conn")

    def __init__(
        self,
        world: Any,
        out: CrossPipe,
        inbound: Pipe,
        host: Tuple[str, int],
        peer: Tuple[str, int],
    ) -> None:
        super().__init__(out, host, peer)
        self.cross_out = out
        self.world = world
        self.inbound = inbound
        inbound.receiver = self
        self.conn = out.conn

    def loseConnection(self) -> None:
        """Close once what was written has arrived: here, and (a FIN) at the other end."""
        if not self.connected or self.disconnecting:
            return
        self.disconnecting = True
        out, clock = self.cross_out, self.cross_out.clock
        at = max(out.free_at, clock.now) + out.latency
        clock.callLater(at - clock.now, self._lost, ConnectionDone)
        self.world.ship(out.dest, (at, FIN, self.conn, None))

    def abortConnection(self) -> None:
        """Close now; the other end hears of it one latency later (a RST)."""
        if not self.connected:
            return
        out = self.cross_out
        self._lost(ConnectionAborted)
        self.world.ship(out.dest, (out.clock.now + out.latency, RST, self.conn, None))

    def _lost(self, why: Any) -> None:
        if not self.connected:
            return
        self.inbound.stop()  # what the other end sent and has not arrived: dropped
        self.inbound.receiver = None
        self.world.cross.pop(self.conn, None)
        super()._lost(why)

    def arrive(self, when: float, data: bytes) -> None:
        """Bytes the other worker shipped: they arrive at ``when`` (not before now)."""
        pipe = self.inbound
        now = pipe.clock.now
        pipe.queue.append((when if when > now else now, data))
        if pipe.seq < 0:
            pipe.clock.schedule(pipe.queue[0][0], pipe)

    def far_end_closed(self) -> None:
        """The other end's FIN or RST has arrived."""
        self._lost(ConnectionDone)
