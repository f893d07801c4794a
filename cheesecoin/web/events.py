"""``GET /api/events``: the member's changes as Server-Sent Events (docs/protocol.md section 7).

Events this stream speaks (``text/event-stream``, one ``id:`` each, increasing by one):

- ``event: tip``, data ``{"height", "tip", "work", "reorg_depth"}``: the best
  stack moved (``reorg_depth`` is how many cheeses it abandoned, 0 when the
  new tip extends the old one);
- ``event: tx``, data ``{"txid"}``: a new mempool transaction;
- ``: keep-alive`` comment lines every HEARTBEAT seconds, so that proxies
  and load balancers keep an idle stream open.

``EventLog`` listens to the node and keeps the last HISTORY events, so that a
client reconnecting with ``Last-Event-ID`` (browsers send it by themselves)
gets what it missed. A stream whose client stops reading is a push producer
of its connection: while the connection's buffer is full its events wait in
a queue of at most MAX_QUEUED bytes; past that, or after STALL seconds
without reading, the connection is dropped (the client may reconnect and
resume). At most MAX_STREAMS streams are open at once.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Set, Tuple, Union, cast

from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from cheesecoin.core.tree import AddResult
from cheesecoin.web.interfaces import EventNode
from cheesecoin.wire.codec import encode

HISTORY = 1000  # events kept for Last-Event-ID resume
HEARTBEAT = 15.0  # seconds between keep-alive comments
MAX_STREAMS = 64  # open event streams
MAX_QUEUED = 256 * 1024  # bytes of events one stream may hold while its client does not read
STALL = 60.0  # seconds a client may read nothing before its stream is dropped
RETRY_MS = 2000  # the reconnection delay we suggest to clients
_EVENT_ID = re.compile(rb"[0-9]{1,19}\Z")

_log = Logger()


class EventLog:
    """The member's recent events and its open streams; fed by the node's listeners."""

    def __init__(
        self,
        node: EventNode,
        clock: IReactorTime,
        history: int = HISTORY,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.node = node
        self.clock = clock
        self.history: Deque[Tuple[int, bytes]] = deque(maxlen=history)
        self.last_id = 0
        self.max_streams = max_streams
        self.streams: Set["EventStream"] = set()
        self.dropped = 0  # streams dropped for not reading (tests, metrics)
        node.tip_listeners.append(self.on_tip)
        node.tx_listeners.append(self.on_tx)

    def on_tip(self, result: AddResult, source: Any) -> None:
        tip = self.node.stack.tip
        self.publish(
            "tip",
            {
                "height": tip.height,
                "tip": tip.smell,
                "work": str(tip.work),
                "reorg_depth": len(result.disconnected),
            },
        )

    def on_tx(self, tx_id: str, tx: dict, source: Any) -> None:
        self.publish("tx", {"txid": tx_id})

    def publish(self, kind: str, data: Dict[str, Any]) -> None:
        self.last_id += 1
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (
            self.last_id,
            kind.encode("ascii"),
            encode(data),
        )
        self.history.append((self.last_id, frame))
        for stream in list(self.streams):
            stream.send(frame)

    def missed(self, last_id: int) -> Tuple[List[bytes], bool]:
        """The frames after ``last_id`` that we still hold, and whether that is all of them."""
        if last_id > self.last_id:  # an id of an earlier run of this member
            return [frame for _, frame in self.history], False
        frames = [frame for event_id, frame in self.history if event_id > last_id]
        oldest = self.history[0][0] if self.history else self.last_id + 1
        return frames, last_id + 1 >= oldest

    def heartbeat(self) -> None:
        """Send the keep-alive comment to every stream; drop those stalled too long."""
        now = self.clock.seconds()
        for stream in list(self.streams):
            stream.heartbeat(now)

    def close_all(self) -> None:
        for stream in list(self.streams):
            stream.finish()


class EventStream:
    """One client's stream: a push producer of its HTTP connection."""

    def __init__(self, log: EventLog, request: server.Request) -> None:
        self.log = log
        self.request = request
        self.paused = False
        self.paused_since = 0.0
        self.queue: Deque[bytes] = deque()
        self.queued = 0
        self.closed = False

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        if self.paused or self.queue:
            if self.queued + len(frame) > MAX_QUEUED:
                self.drop(f"it queued more than {MAX_QUEUED} bytes of events unread")
                return
            self.queue.append(frame)
            self.queued += len(frame)
            return
        self.request.write(frame)

    def heartbeat(self, now: float) -> None:
        if self.paused and now - self.paused_since > STALL:
            self.drop(f"it read nothing for {STALL:.0f} s")
        else:
            self.send(b": keep-alive\n\n")

    # IPushProducer: the connection tells us when its buffer is full and when it is drained.
    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.paused_since = self.log.clock.seconds()

    def resumeProducing(self) -> None:
        self.paused = False
        while self.queue and not self.paused and not self.closed:
            frame = self.queue.popleft()
            self.queued -= len(frame)
            self.request.write(frame)

    def stopProducing(self) -> None:
        self.closed = True
        self.log.streams.discard(self)

    def drop(self, why: str) -> None:
        """Close a stream whose client does not read (its queue is freed at once)."""
        self.log.dropped += 1
        _log.info("Dropped an event stream from {peer}: {why}", peer=_peer(self.request), why=why)
        self.closed = True
        self.log.streams.discard(self)
        self.queue.clear()
        self.queued = 0
        transport = self.request.channel.transport if self.request.channel is not None else None
        if transport is not None:
            # a TCP or TLS connection (and the tests' StringTransport): it can abort
            cast(ITCPTransport, transport).abortConnection()

    def finish(self) -> None:
        """End the stream cleanly (the member is stopping)."""
        if not self.closed:
            self.closed = True
            self.log.streams.discard(self)
            self.request.unregisterProducer()
            self.request.finish()

    def lost(self, _reason: object) -> None:
        self.closed = True
        self.log.streams.discard(self)


def _peer(request: server.Request) -> str:
    peer = request.getClientAddress()
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


def _refuse(request: server.Request, status: int, code: str, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return encode({"error": code, "message": message})


class EventsPage(Resource):
    """GET /api/events: the event stream (see the module docstring)."""

    isLeaf = True

    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self.log = log

    def render(self, request: server.Request) -> Union[bytes, int]:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return _refuse(request, 405, "method-not-allowed", "/api/events takes GET")
        if [p for p in request.postpath or () if p]:
            return _refuse(request, 404, "not-found", "no such API path")
        header = request.getHeader(b"last-event-id")
        last_id: Optional[int] = None
        if header is not None and header.strip():
            if not _EVENT_ID.match(header.strip()):
                return _refuse(
                    request,
                    400,
                    "bad-request",
                    "Last-Event-ID must be an event id (a whole number)",
                )
            last_id = int(header.strip())
        if len(self.log.streams) >= self.log.max_streams:
            return _refuse(
                request,
                503,
                "busy",
                f"this member already serves {self.log.max_streams} event streams",
            )
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")  # nginx: do not buffer the stream
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        if request.method == b"HEAD":
            return b""
        if request.channel is not None:
            request.channel.setTimeout(None)  # the heartbeat and the stall rule take over
        stream = EventStream(self.log, request)
        self.log.streams.add(stream)
        request.registerProducer(stream, True)
        request.notifyFinish().addBoth(stream.lost)
        stream.send(b"retry: %d\n\n" % RETRY_MS)
        if last_id is not None:
            frames, whole = self.log.missed(last_id)
            if not whole:
                stream.send(
                    b": events after %d are no longer held; "
                    b"the stream goes on from the oldest kept\n\n" % last_id
                )
            for frame in frames:
                stream.send(frame)
        return server.NOT_DONE_YET
