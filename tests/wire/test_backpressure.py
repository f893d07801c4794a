"""Back-pressure in the one JSON-line transport (cheesecoin.lineproto) that
the member, tracker and miner port share: a peer that does not read what we
write is not read from, its pending requests are not answered until it
drains, pushed lines wait in a bounded backlog, streams are pulled lazily,
and a peer that stays stuck is dropped."""

from __future__ import annotations

import json
from typing import Iterator, List

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.wire.lineproto import JsonLineProtocol


class Echo(JsonLineProtocol):
    """Answers every PING with a PONG."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.handled = 0

    def connectionMade(self) -> None:
        self.start_producing()

    def msg_PING(self, msg: dict) -> None:
        self.handled += 1
        self.reply(msg, {"type": "PONG"})


def connected() -> tuple:
    clock = Clock()
    proto = Echo(clock)
    transport = StringTransport()
    proto.makeConnection(transport)
    assert transport.producer is proto and transport.streaming
    return proto, transport, clock


def lines(transport: StringTransport) -> List[dict]:
    data = transport.value()
    transport.clear()
    return [json.loads(line) for line in data.split(b"\n") if line]


def pings(n: int) -> bytes:
    return b"".join(json.dumps({"type": "PING", "id": i}).encode() + b"\n" for i in range(n))


class ReadingBackPressureTests(SynchronousTestCase):
    """A peer that does not read is not read from; its requests wait in order."""

    def test_requests_wait_while_the_peer_does_not_read_and_are_answered_in_order_after(
        self,
    ) -> None:
        proto, transport, _ = connected()
        proto.dataReceived(pings(1))
        assert proto.handled == 1
        proto.pauseProducing()  # what a full write buffer makes the transport do
        assert transport.producerState == "paused"  # the transport stops reading too
        proto.dataReceived(pings(2000)[len(pings(1)) :])  # lines already read when it paused
        assert proto.handled == 1
        proto.resumeProducing()
        assert proto.handled == 2000
        assert [m["id"] for m in lines(transport)] == list(range(2000))

    def test_pausing_in_the_middle_of_a_batch_stops_there(self) -> None:
        proto, transport, _ = connected()

        class PausingTransport(StringTransport):
            def write(self, data: bytes) -> None:
                super().write(data)
                if len(self.value()) > 200:
                    proto.pauseProducing()

        transport = PausingTransport()
        proto.makeConnection(transport)
        proto.dataReceived(pings(100))
        handled = proto.handled
        assert 0 < handled < 100  # stopped as soon as the buffer was full
        transport.clear()
        proto.resumeProducing()
        assert proto.handled > handled


class WritingBackPressureTests(SynchronousTestCase):
    """Pushed lines in a bounded backlog, keyed pushes, lazily pulled feeds."""

    def test_pushed_lines_wait_in_a_bounded_backlog_and_beyond_it_are_dropped(self) -> None:
        proto, transport, _ = connected()
        proto.MAX_BACKLOG = 1000
        proto.pauseProducing()
        line = b'{"type":"TX","tx":{}}\n'
        sent = [proto.push_line(line) for _ in range(100)]
        assert sent.count(True) == 1000 // len(line) and proto.dropped == 100 - sent.count(True)
        assert transport.value() == b""
        proto.resumeProducing()
        assert transport.value() == line * sent.count(True)

    def test_a_keyed_push_replaces_the_one_it_supersedes(self) -> None:
        proto, transport, _ = connected()
        proto.pauseProducing()
        for job in range(50):
            proto.push_line(json.dumps({"type": "WORK", "job": job}).encode() + b"\n", key="WORK")
        proto.push_line(b'{"type":"OTHER"}\n')
        proto.resumeProducing()
        assert lines(transport) == [{"type": "WORK", "job": 49}, {"type": "OTHER"}]

    def test_a_feed_is_pulled_only_while_the_peer_reads(self) -> None:
        proto, transport, _ = connected()
        pulled = []

        def stream():
            for i in range(10):
                pulled.append(i)
                if i == 3:
                    proto.pauseProducing()
                yield json.dumps({"n": i}).encode() + b"\n"

        proto.feed(stream())
        assert pulled == [0, 1, 2, 3] and len(lines(transport)) == 4
        proto.resumeProducing()
        assert pulled == list(range(10))
        assert [m["n"] for m in lines(transport)] == list(range(4, 10))


class StuckPeerTests(SynchronousTestCase):
    """A peer stuck past the stall timeout is dropped; closing drops what waits."""

    def test_a_peer_stuck_past_the_stall_timeout_is_dropped_and_one_that_drains_is_not(
        self,
    ) -> None:
        proto, transport, clock = connected()
        proto.pauseProducing()
        clock.advance(proto.STALL_TIMEOUT - 1)
        proto.resumeProducing()
        clock.advance(10)
        assert not transport.disconnecting
        proto.pauseProducing()
        clock.advance(proto.STALL_TIMEOUT)
        assert transport.disconnecting and proto.closing

    def test_closing_drops_what_waits(self) -> None:
        proto, transport, clock = connected()
        proto.pauseProducing()
        proto.push_line(b'{"type":"X"}\n')
        proto.feed(iter([b'{"type":"Y"}\n']))
        proto.close()
        assert proto._backlog_bytes == 0 and not proto._feeds and not clock.getDelayedCalls()

    def test_a_connection_that_never_waits_holds_no_queues(self) -> None:
        """Memory: the backlog and the feeds are made when first needed (a
        simulated network holds hundreds of thousands of connections), keep
        their order and keys, and are dropped when the connection goes."""
        proto, transport, _ = connected()
        proto.push_line(b'{"type":"A"}\n')
        proto.feed(iter([]))
        assert proto._backlog is None
        proto.pauseProducing()
        proto.push_line(b'{"type":"B"}\n', key="k")
        proto.push_line(b'{"type":"C"}\n', key="k")  # replaces B
        proto.feed(iter([b'{"type":"D"}\n']))
        assert proto._backlog is not None and proto._feeds is not None
        proto.resumeProducing()
        assert [m["type"] for m in lines(transport)] == ["A", "C", "D"]
        proto.release_buffers()
        assert proto._backlog is None and proto._feeds is None

    def test_a_feed_that_closes_the_connection_ends_the_pump_quietly(self) -> None:
        proto, transport, _ = connected()

        def closing() -> Iterator[bytes]:
            proto.close()
            return
            yield b""

        proto.feed(closing())
        assert proto.closing and transport.disconnecting
        assert proto._feeds is None
