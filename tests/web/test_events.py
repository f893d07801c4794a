"""``GET /api/events``: Server-Sent Events of tips (with the reorganisation's
depth) and transactions, increasing ids, ``Last-Event-ID`` resume from a
bounded history, the keep-alive comment, and the bound on what a client that
does not read may make us hold."""

from __future__ import annotations

import json
from typing import List, Optional, Tuple

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child
from cheesecoin.web import api
from cheesecoin.web import events as events_mod
from cheesecoin.web.events import EventLog
from tests.cases import case

ALICE = key_from_seed("alice")
A, B = address_of(ALICE), address_of(key_from_seed("bob"))


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body (as much of it as has arrived)."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def parse(stream: bytes) -> Tuple[List[dict], List[str]]:
    """SSE frames -> ([{"id", "event", "data"}], [comments])."""
    frames, comments = [], []
    for block in stream.decode("utf-8").split("\n\n"):
        if not block:
            continue
        frame: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(": ")
                frame[name] = value
        if "event" in frame:
            frame["data"] = json.loads(frame["data"])
            frame["id"] = int(frame["id"])
            frames.append(frame)
    return frames, comments


class Harness:
    def __init__(
        self, history: int = events_mod.HISTORY, max_streams: int = events_mod.MAX_STREAMS
    ) -> None:
        self.network = make_network()
        self.node = MemberNode(CheeseStack(self.network))
        self.clock = Clock()
        self.events = EventLog(self.node, self.clock, history=history, max_streams=max_streams)
        self.site = api.make_site(self.node, events=self.events)
        self.site._reactor = self.clock
        self.tip = self.network.blue_cheese

    def mine(self, parent: Optional[dict] = None, txs=(), nonce: int = 0) -> dict:
        cheese = mine_child(parent or self.tip, self.network.bits, A, list(txs), start_nonce=nonce)
        result = self.node.submit_cheese(cheese)
        if result.tip_changed:
            self.tip = cheese
        return cheese

    def connect(self, headers: str = "") -> Tuple[object, StringTransport]:
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(f"GET /api/events HTTP/1.1\r\nHost: m\r\n{headers}\r\n".encode())
        return channel, transport


def body_of(transport: StringTransport) -> Tuple[str, bytes]:
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return head.decode("latin-1"), dechunk(body)


class EventStreamTests(SynchronousTestCase):
    """Tip and tx events in order, reorganisation depth, resume by Last-Event-ID."""

    def test_a_client_sees_tip_and_tx_events_in_order_with_increasing_ids(self) -> None:
        h = Harness()
        _, transport = h.connect()
        first = h.mine()
        h.mine()
        tx = sign_tx(ALICE, B, 5, 1, 0, "cheese money")
        tx_id, _ = h.node.submit_tx(tx)
        head, body = body_of(transport)
        assert head.startswith("HTTP/1.1 200")
        assert "Content-Type: text/event-stream" in head
        assert body.startswith(b"retry: ")
        frames, _ = parse(body)
        assert [f["event"] for f in frames] == ["tip", "tip", "tx"]
        assert [f["id"] for f in frames] == [1, 2, 3]
        assert frames[0]["data"] == {
            "height": 1,
            "tip": first["smell"],
            "work": str(h.node.stack.nodes[first["smell"]].work),
            "reorg_depth": 0,
        }
        assert frames[1]["data"]["height"] == 2 and frames[1]["data"]["tip"] == h.tip["smell"]
        assert frames[2]["data"] == {"txid": tx_id}
        assert h.node.submit_tx(tx)[1] is False
        assert len(parse(body_of(transport)[1])[0]) == 3, (
            "a transaction we already hold is no new event"
        )

    def test_a_reorganisation_shows_its_depth(self) -> None:
        h = Harness()
        root = h.network.blue_cheese
        h.mine()
        h.mine()
        _, transport = h.connect()
        fork = [mine_child(root, h.network.bits, B, [], start_nonce=10_000)]
        for _ in range(2):
            fork.append(mine_child(fork[-1], h.network.bits, B, [], start_nonce=10_000))
        for cheese in fork:
            h.node.submit_cheese(cheese)
        frames, _ = parse(body_of(transport)[1])
        assert [f["data"]["reorg_depth"] for f in frames] == [
            2
        ]  # 2 cheeses abandoned when the fork took over
        assert frames[0]["data"]["tip"] == fork[-1]["smell"] and frames[0]["data"]["height"] == 3

    def test_last_event_id_resumes_with_what_was_missed(self) -> None:
        h = Harness()
        for _ in range(5):
            h.mine()
        _, transport = h.connect("Last-Event-ID: 2\r\n")
        frames, comments = parse(body_of(transport)[1])
        assert [f["id"] for f in frames] == [3, 4, 5]
        assert not comments
        h.mine()
        assert [f["id"] for f in parse(body_of(transport)[1])[0]] == [3, 4, 5, 6]

    def test_resume_from_an_id_no_longer_held_says_so(self) -> None:
        h = Harness(history=3)
        for _ in range(6):
            h.mine()
        _, transport = h.connect("Last-Event-ID: 1\r\n")
        frames, comments = parse(body_of(transport)[1])
        assert [f["id"] for f in frames] == [4, 5, 6]
        assert any("no longer held" in c for c in comments)
        _, later = h.connect("Last-Event-ID: 99\r\n")  # from an earlier run of the member
        frames, comments = parse(body_of(later)[1])
        assert [f["id"] for f in frames] == [4, 5, 6] and comments

    def test_a_bad_last_event_id_is_a_json_400(self) -> None:
        for value in ["abc", "-1", "1" * 25]:
            with case(value=value):
                h = Harness()
                _, transport = h.connect(f"Last-Event-ID: {value}\r\n")
                head, _, body = transport.value().partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 400")
                assert json.loads(dechunk(body) or body)["error"] == "bad-request"


class EventStreamLimitTests(SynchronousTestCase):
    """Heartbeats, clients that do not read, the cap on streams, closing and methods."""

    def test_the_heartbeat_keeps_the_stream_open_past_the_idle_timeout(self) -> None:
        h = Harness()
        _, transport = h.connect()
        for _ in range(10):
            h.clock.advance(events_mod.HEARTBEAT)
            h.events.heartbeat()
        _, comments = parse(body_of(transport)[1])
        assert comments.count("keep-alive") == 10
        assert not transport.disconnecting, "an idle but reading client is dropped"
        assert len(h.events.streams) == 1

    def test_a_client_that_does_not_read_is_bounded_then_dropped(self) -> None:
        h = Harness()
        channel, transport = h.connect()
        channel.pauseProducing()  # the connection's buffer is full: the client reads nothing
        (stream,) = h.events.streams
        written = len(transport.value())
        for i in range(10_000):
            h.events.publish("tx", {"txid": "%040x" % i})
            assert stream.queued <= events_mod.MAX_QUEUED
            if stream.closed:
                break
        assert stream.closed and h.events.dropped == 1, "the stream was never dropped"
        assert len(transport.value()) == written, (
            "events were written to a connection that reads nothing"
        )
        assert not h.events.streams and stream.queued == 0

    def test_a_stalled_client_is_dropped_after_stall_seconds_and_a_reading_one_catches_up(
        self,
    ) -> None:
        h = Harness()
        slow_channel, slow = h.connect()
        fast_channel, fast = h.connect()
        slow_channel.pauseProducing()
        fast_channel.pauseProducing()
        h.mine()
        h.mine()
        fast_channel.resumeProducing()  # it read: what waited is written, in order
        assert [f["id"] for f in parse(body_of(fast)[1])[0]] == [1, 2]
        h.clock.advance(events_mod.STALL + 1)
        h.events.heartbeat()
        assert len(h.events.streams) == 1 and h.events.dropped == 1
        assert parse(body_of(slow)[1])[0] == []

    def test_streams_are_capped_with_a_json_503(self) -> None:
        h = Harness(max_streams=2)
        h.connect()
        h.connect()
        _, third = h.connect()
        head, _, body = third.value().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(dechunk(body) or body)["error"] == "busy"

    def test_a_closed_stream_is_forgotten_and_stopping_ends_the_others(self) -> None:
        h = Harness()
        gone, _ = h.connect()
        _, staying = h.connect()
        gone.connectionLost(Failure(ConnectionDone()))
        assert len(h.events.streams) == 1
        h.mine()
        h.events.close_all()
        assert not h.events.streams
        assert staying.value().endswith(b"0\r\n\r\n"), "the stream did not end cleanly"

    def test_events_take_only_get_and_head(self) -> None:
        h = Harness()
        channel = h.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(
            b"POST /api/events HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert transport.value().startswith(b"HTTP/1.1 405")
