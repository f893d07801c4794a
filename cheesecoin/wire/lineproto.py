"""The JSON-line transport shared by every CheeseCoin protocol (docs/protocol.md s.1).

``JsonLineProtocol`` keeps received bytes in a ``bytearray`` and searches for
``\\n`` only in the bytes that arrived since the last search, so one long line
sent in small pieces costs linear time (``LineReceiver`` re-scans its buffer).
Each line is parsed by ``cheesecoin.wire`` and dispatched to
``msg_<TYPE>(msg)``; every failure goes through one path, ``send_error``,
which echoes the request's ``id`` and closes the connection after
``MAX_ERRORS`` errors or a line over 4 MiB.

Back-pressure is here too (``start_producing``): the protocol registers
itself as the push producer of its own transport. While the transport's
write buffer is full (the peer does not read what we write) we neither read
from the peer nor handle the lines it already sent, so its requests cannot
make us hold more replies; pushed messages (``push_line``) wait in a
backlog of at most ``MAX_BACKLOG`` bytes and are dropped beyond it (a keyed
one, such as the miner port's WORK, replaces the one it supersedes);
streams (``feed``) are pulled only while the peer reads; and a peer that
leaves our output unread for ``STALL_TIMEOUT`` seconds is dropped.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Iterator, Optional, Tuple, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cheesecoin.core.errors import ProtocolError
from cheesecoin.wire import codec as wire
from cheesecoin.wire.interfaces import LineTransport


@implementer(IPushProducer)
class JsonLineProtocol(Protocol):
    """Base class: one JSON object per line, dispatch by ``msg_`` + type."""

    MAX_LENGTH: int = wire.MAX_LINE
    MAX_ERRORS: int = 10
    MAX_BACKLOG: int = 1024 * 1024  # pushed bytes held for a peer that is not reading
    STALL_TIMEOUT: float = 60.0  # seconds our output may stay unread before we drop the peer
    log = Logger()
    clock: Optional[IReactorTime] = None  # for the stall timer; set by the factory or subclass
    # Told of every message line in or out: traffic(direction "in"/"out", type, bytes) (metrics).
    traffic: Optional[Callable[[str, str, int], None]] = None
    _producing = False  # registered as our transport's producer (start_producing)
    _aborted = False

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for b"\n"
        self.errors = 0
        self.closing = False
        self.current_id: Any = None
        self.paused = False  # our transport's write buffer is full: the peer is not reading
        self.dropped = 0  # pushed messages dropped because the peer did not read
        # made when first needed (most connections never wait: a simulated network
        # holds hundreds of thousands of them, and an empty deque is 600 bytes)
        self._backlog: Optional[Deque[Tuple[Optional[str], bytes]]] = None
        self._backlog_bytes = 0
        self._feeds: Optional[Deque[Iterator[bytes]]] = None
        self._stall: Optional[IDelayedCall] = None

    # -- receiving -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self._buffer
        if (
            not buf
            and not self.paused
            and 0 < len(data) <= self.MAX_LENGTH + 1
            and data.find(b"\n") == len(data) - 1
        ):
            # The common case: exactly one whole line (nothing to buffer or scan again).
            self.line_received(data[:-1])
            return
        buf += data
        start = 0
        # While paused (the peer does not read our replies) its lines wait
        # here: the transport reads no more, so this buffer stays bounded.
        while not self.closing and not self.paused:
            end = buf.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(buf)
                break
            line = bytes(buf[start:end])
            start = end + 1
            self._scanned = start
            if len(line) > self.MAX_LENGTH + 1 or (
                len(line) > self.MAX_LENGTH and not line.endswith(b"\r")
            ):
                self._too_long()
                return
            self.line_received(line)
        if self.closing:
            return
        if start:
            del buf[:start]
            self._scanned -= start
        if len(buf) > self.MAX_LENGTH + 1:
            self._too_long()

    def _too_long(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self.send_error("too-long", f"a line is longer than {self.MAX_LENGTH} bytes")
        self.close()

    def line_received(self, line: bytes) -> None:
        """Parse and dispatch one line; any error becomes an ERROR reply."""
        self.current_id = None
        try:
            msg = wire.parse_message(line)
            if self.traffic is not None:
                self.traffic("in", msg["type"], len(line) + 1)
            if "id" in msg:  # most pushed messages have none
                self.current_id = wire.message_id(msg)
                if self.current_id is None:
                    raise ProtocolError("bad-message", "'id' must be a string or an integer")
            self.dispatch(msg)
        except ProtocolError as e:
            msg_id = self.current_id
            if msg_id is None and e.code == "bad-message":
                msg_id = wire.salvage_id(line)  # refused while parsing: echo its id anyway
            self.refuse(e, msg_id)
        except Exception:
            self.log.failure("Internal error handling a {type} message", Failure(), type="?")
            self.send_error("bad-message", "the message could not be handled", self.current_id)
        finally:
            self.current_id = None

    def dispatch(self, msg: dict) -> None:
        """Call ``msg_<TYPE>``; subclasses may check state first."""
        handler = getattr(self, "msg_" + msg["type"], None)
        if handler is None or not msg["type"].isupper():
            raise ProtocolError("unknown-type", f"unknown message type {msg['type'][:40]!r}")
        handler(msg)

    # -- sending -------------------------------------------------------------

    def send(self, msg: dict, msg_id: Any = None) -> None:
        """Send one message; ``msg_id`` (or the current request's id) is echoed."""
        if self.transport is None or self.closing:
            return
        if msg_id is None:
            msg_id = self.current_id
        if msg_id is not None and "id" not in msg:
            msg = dict(msg, id=msg_id)
        self.write(wire.dumps(msg))

    def write(self, data: bytes) -> None:
        """Write encoded lines (each starts with its "type"), counted for the traffic hook."""
        if self.traffic is not None:
            self.traffic("out", line_type(data), len(data))
        transport = self.transport
        assert transport is not None  # callers check that the connection is there
        transport.write(data)

    def reply(self, request: dict, msg: dict) -> None:
        """Send the direct reply to ``request`` (echoing its id)."""
        self.send(msg, wire.message_id(request))

    def refuse(self, error: ProtocolError, msg_id: Any = None) -> None:
        """Send the ERROR for ``error``, with the points it carries (if any)."""
        self.send_error(error.code, error.message, msg_id, error.points)

    def send_error(
        self, code: str, text: str, msg_id: Any = None, points: Optional[int] = None
    ) -> None:
        """The one ERROR path: reply, count, and close after MAX_ERRORS.

        ``points`` (None: the code's own cost) goes to the ``on_error`` hook."""
        if self.closing:
            return
        self.errors += 1
        self.send(wire.error_message(code, text, msg_id), msg_id)
        self.on_error(code, text, points)
        if self.errors >= self.MAX_ERRORS and not self.closing:
            self.log.info("Closing {peer}: {n} errors", peer=self.peer_label(), n=self.errors)
            self.close()

    def on_error(self, code: str, text: str, points: Optional[int] = None) -> None:
        """Hook: called after each ERROR sent (for misbehaviour scores); ``points``
        is what the error carried (None: what its code costs)."""

    def push_line(self, data: bytes, key: Optional[str] = None) -> bool:
        """Write a pushed message (one encoded line, no reply expected).

        While the peer is not reading it waits in a bounded backlog and is
        sent when the peer drains its buffer; past ``MAX_BACKLOG`` bytes it is
        dropped. With ``key``, it replaces a waiting line of the same key
        (only the newest of those matters). False if it was dropped.
        """
        if self.transport is None or self.closing:
            return False
        if not self.paused:
            self.write(data)
            return True
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        if key is not None:
            for i, (waiting_key, waiting) in enumerate(backlog):
                if waiting_key == key:
                    del backlog[i]
                    self._backlog_bytes -= len(waiting)
                    break
        if self._backlog_bytes + len(data) > self.MAX_BACKLOG:
            self.dropped += 1
            return False
        backlog.append((key, data))
        self._backlog_bytes += len(data)
        return True

    def feed(self, lines: Iterator[bytes]) -> None:
        """Write the lines of an iterator, pulling each only while the peer reads."""
        if self.transport is None or self.closing:
            return
        if self._feeds is None:
            self._feeds = deque()
        self._feeds.append(iter(lines))
        self._pump()

    def _pump(self) -> None:
        """Send the backlog, then pull from the feeds, until the peer stops reading."""
        # (each deque read again at each turn: a write can close the connection,
        # which drops them)
        while self._backlog and not self.paused and not self.closing:
            _key, data = self._backlog.popleft()
            self._backlog_bytes -= len(data)
            self.write(data)
        while self._feeds and not self.paused and not self.closing:
            feeds = self._feeds  # (a feed's iterator may close the connection, dropping it)
            line = next(feeds[0], None)
            if line is None:
                feeds.popleft()
            else:
                self.write(line)

    def close(self) -> None:
        """Flush what was written and close."""
        if self.closing:
            return
        self.closing = True
        self._drop_pending()
        if self.transport is not None:
            self._stop_producer()
            self.transport.loseConnection()

    def release_buffers(self) -> None:
        """The connection is gone: what it left unread or unsent is dropped, so a
        closed connection that something still refers to holds no input."""
        self._buffer = bytearray()
        self._scanned = 0
        self._drop_pending()

    def _drop_pending(self) -> None:
        self._backlog = self._feeds = None
        self._backlog_bytes = 0
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    def abort(self) -> None:
        """Drop the connection at once, without flushing (a silent or stuck peer,
        even one already closing whose unread replies would keep it open)."""
        if self._aborted or self.transport is None:
            return
        self._aborted = self.closing = True
        self._drop_pending()
        self._stop_producer()
        self.line_transport.abortConnection()

    # -- back-pressure: IPushProducer, driven by our transport's write buffer ----

    def start_producing(self) -> None:
        """Register as our transport's producer (call from connectionMade): while
        the peer does not read what we write, we stop reading from it."""
        self.line_transport.registerProducer(self, True)
        self._producing = True

    def pauseProducing(self) -> None:
        """Our transport's write buffer is full: stop reading and handling requests."""
        if not self._producing or self.paused:
            return
        self.paused = True
        self.line_transport.pauseProducing()
        if self.clock is not None and self._stall is None:
            self._stall = self.clock.callLater(self.STALL_TIMEOUT, self._stalled)

    def resumeProducing(self) -> None:
        """The peer read what we wrote: send what waits, then read and handle again."""
        if not self._producing or not self.paused:
            return
        self.paused = False
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None
        self._pump()
        if self.paused or self.closing:
            return
        self.line_transport.resumeProducing()
        if self._buffer:
            self.dataReceived(b"")  # the lines that arrived before we paused

    def stopProducing(self) -> None:
        self._producing = False

    def _stalled(self) -> None:
        self._stall = None
        if self.paused and not self.closing:
            self.log.info(
                "Dropping {peer}: it has not read our replies for {secs:.0f} s",
                peer=self.peer_label(),
                secs=self.STALL_TIMEOUT,
            )
            self.abort()

    def _stop_producer(self) -> None:
        if self._producing:  # a transport with a registered producer never finishes closing
            self._producing = False
            self.line_transport.unregisterProducer()

    @property
    def line_transport(self) -> LineTransport:
        """Our transport, as the producer and consumer it is once connected."""
        return cast(LineTransport, self.transport)

    def peer_label(self) -> str:
        try:
            peer = self.line_transport.getPeer()
        except Exception:
            return "?"
        if isinstance(peer, (IPv4Address, IPv6Address)):
            return f"{peer.host}:{peer.port}"
        return "?"

    def peer_host(self) -> Optional[str]:
        try:
            peer = self.line_transport.getPeer()
        except Exception:
            return None
        return peer.host if isinstance(peer, (IPv4Address, IPv6Address)) else None


def line_type(data: bytes) -> str:
    """The type of an encoded message line (our encoder writes "type" first), or "?"."""
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 0:
            return data[9:end].decode("ascii", "replace")
    return "?"


class BusyProtocol(Protocol):
    """What a connection turned away for a limit gets: ``ERROR busy`` naming
    the limit, then the close (docs/protocol.md section 1)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None  # connectionMade comes after makeConnection
        transport.write(wire.dumps(wire.error_message("busy", self.why)))
        transport.loseConnection()
