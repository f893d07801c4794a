# The CheeseCoin member protocol: member to member, docs/protocol.md sections 5 to 5.3.
#
# Messages (JSON lines, docs/protocol.md section 1); what each state answers is
# its ``cmd_map`` (cheesecoin.p2p.states, cheesecoin.p2p.tls):
#
#   {"type":"HELLO","version":1,"network":SMELL,"node_id":HEX,"port":P|null,
#    "height":N,"tip":SMELL,"work":"DECIMAL","features":[...]}   the handshake; the
#        connecting side sends it first, the accepting side answers with its own
#   {"type":"STARTTLS"}            both HELLOs list tls (section 5.3): TLS, then the key check
#   requests -> replies: STATS -> STATS_REPLY, GET_CHEESE -> CHEESE, GET_CHEESES
#        (from, locator, smells) -> CHEESES, GET_HEADERS -> HEADERS, GET_PEERS -> PEERS,
#        PING -> PONG, GET_MEMPOOL -> MEMPOOL, GET_TXS -> TXS, GET_COMPACT -> COMPACT,
#        or ERROR
#   pushed, no reply on success: ANNOUNCE, ANNOUNCE_COMPACT, ANNOUNCE_HEADER, TX, INV,
#        SEND_COMPACT, CONSENSUS
#
#   Errors we send: bad-json, bad-message, unknown-type, too-long (framing,
#   see cheesecoin.wire.lineproto), handshake-required, wrong-network, not-found,
#   invalid-cheese, invalid-tx, busy. We never answer an ERROR or a reply.
#
# The asking side matches replies and ERROR to its requests by "id", with a
# timeout per request.
"""``MemberProtocol``: one connection to another member, either direction.

The connection itself lives here (the transport, requests with ids and their
replies, timeouts, misbehaviour points); what a message means depends on the
connection's state (``cheesecoin.p2p.states``): a handshake state that
accepts only ``HELLO``, then a ready state with the other handlers, each
state's ``cmd_map``. The connection holds what its peer claims of its stack
(``claim``, the one writer of ``peer_height``, ``peer_tip`` and
``peer_work``) and needs of the member side only ``PeerHost``.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Dict, FrozenSet, Optional, Set, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, ITLSTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from cheesecoin.p2p.errors import BAN_SCORE, ERROR_POINTS, RemoteError, RequestTimeout
from cheesecoin.p2p.features import COMPACT_MODES
from cheesecoin.p2p.interfaces import PeerHost
from cheesecoin.p2p.states import ConnectionState, HandshakeState, ReadyState
from cheesecoin.util.addresses import Address
from cheesecoin.wire import codec as wire
from cheesecoin.wire.lineproto import JsonLineProtocol

if TYPE_CHECKING:
    from cheesecoin.p2p.download import BaseDownload
    from cheesecoin.p2p.tls import TlsCreator

__all__ = ["BAN_SCORE", "ERROR_POINTS", "REQUEST_TIMEOUT", "MemberProtocol", "short"]

REQUEST_TIMEOUT = 30.0
# A PING or PONG as our encoder writes it, with an integer id below 10**15.
_KEEPALIVE = re.compile(rb'\{"type":"(PING|PONG)","id":(0|[1-9][0-9]{0,14})\}')
# A STATS or STATS_REPLY as our encoder writes them (StackServer.stats_line), with an
# integer id below 10**15: height, tip, work, peers (the reply's) and id.
_STATS = re.compile(
    rb'\{"type":"STATS(?:","id":|_REPLY","height":(0|[1-9][0-9]{0,14}),"tip":"([0-9a-f]{40})",'
    rb'"work":"(0|[1-9][0-9]{0,79})","peers":(0|[1-9][0-9]{0,9}),"id":)(0|[1-9][0-9]{0,14})\}'
)


def short(smell: str) -> str:
    """A smell shortened for log lines."""
    return smell[:12] + "..."


def node_id_key(node_id: str) -> Tuple[int, str]:
    """Order of node ids: numerically (they are hex), then as text."""
    return (int(node_id, 16), node_id)


# Each connection's hash: the order it was made in, not its address in memory, so
# that iterating over a set of connections (eviction, timers, rebuild attempts)
# goes the same way every run and a simulation repeats exactly from its seed.
_SERIALS = itertools.count(1)


@implementer(IHandshakeListener)
class MemberProtocol(JsonLineProtocol):
    """One connection to another member, either direction; ``state`` decides
    what each message means (``HandshakeState``, then ``ReadyState``)."""

    def __init__(
        self, host: PeerHost, outbound: bool, dial_address: Optional[Address] = None
    ) -> None:
        self._serial = next(_SERIALS)
        super().__init__()
        self.host = host
        self.clock = host.clock
        self.traffic = host.traffic
        self.outbound = outbound
        self.dial_address = dial_address
        self.ready = False  # handshake done
        self.hello_sent = False
        self.peer_node_id: Optional[str] = None
        self.peer_port: Optional[int] = None
        self.peer_features: FrozenSet[str] = frozenset()  # what its HELLO listed (section 5.1)
        self.encrypted = False  # TLS is up and the peer's key is its node_id (section 5.3)
        self.mempool_done = False  # the mempool exchange (or push) with this peer has started
        self._height, self._tip, self._work = 0, "", 0  # its stack, as claimed (``claim``)
        self.score = 0
        self.connected_at = 0.0
        self.last_seen = 0.0
        self.last_cheese_at = 0.0  # when this peer last gave us a cheese new to us (eviction)
        self.cheeses_delivered = 0
        self.sync_idle_until = 0.0
        self.download: Optional[BaseDownload] = None  # the download from this peer, if one runs
        self.wants_compact = False  # it sent SEND_COMPACT high_bandwidth true (section 5.2)
        # id -> (its Deferred, its timer)
        self.pending: Dict[int, Tuple[Deferred, IDelayedCall]] = {}
        self.peer_requests: Set[int] = set()  # ids of our GET_PEERS still unanswered
        self._next_id = 0
        self.state: ConnectionState = HandshakeState(self)

    # -- what the peer says of itself ----------------------------------------------

    @property
    def peer_height(self) -> int:
        return self._height

    @property
    def peer_tip(self) -> str:
        return self._tip

    @property
    def peer_work(self) -> int:
        return self._work

    def hello(self, node_id: str, port: Optional[int], features: FrozenSet[str]) -> None:
        """Who the peer says it is (its HELLO's checked fields)."""
        self.peer_node_id, self.peer_port, self.peer_features = node_id, port, features

    def __hash__(self) -> int:
        return self._serial

    def claim(self, height: int, tip: str, work: int) -> None:
        """The peer's stack as it tells it (HELLO, STATS_REPLY): height, tip and work."""
        self._height, self._tip, self._work = height, tip, work

    def holds(self, height: int, tip: str, work: int) -> None:
        """The peer has shown it holds a stack this far (it announced a cheese we
        have, its headers reached it): its claim rises to it, never falls."""
        if work > self._work:
            self.claim(height, tip, work)

    # -- connection --------------------------------------------------------------

    def connectionMade(self) -> None:
        now = self.host.clock.seconds()
        self.connected_at = self.last_seen = now
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:  # announcements are small: do not let Nagle hold them back
            try:
                set_no_delay(True)
            except OSError:
                pass
        self.start_producing()  # a peer that does not read what we send is not read from either
        self.host.connection_made(self)
        if self.outbound:
            self.send_hello()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.state.connection_lost(reason)  # the TLS exchange says why (section 5.3)
        self.closing = True
        self.release_buffers()
        pending, self.pending = self.pending, {}
        for d, call in pending.values():
            if call.active():
                call.cancel()
            d.errback(Failure(ConnectionLost("the connection to the peer closed")))
        self.host.connection_lost(self)

    def label(self) -> str:
        """host:port of the peer, its listening port if known."""
        host = self.peer_host() or "?"
        if self.peer_port:
            return f"{host}:{self.peer_port}"
        return self.peer_label()

    @property
    def listening_address(self) -> Optional[Address]:
        host = self.peer_host()
        if self.peer_port and host:
            return (host, self.peer_port)
        return self.dial_address

    def dataReceived(self, data: bytes) -> None:
        if not self.ready and data[:1] == b"\x16" and not self._buffer and not self.closing:
            # A TLS record (a ClientHello) where a line is expected: closed at once.
            self.send_error(
                "bad-json", "a TLS record where a JSON line is expected (HELLO comes first)"
            )
            self.close()
            return
        JsonLineProtocol.dataReceived(self, data)  # (every message: without super's lookup)

    def start_tls(self, creator: TlsCreator) -> bool:
        """Begin TLS on the transport (section 5.3) right after the STARTTLS line just
        handled; False, and nothing begun, when the peer sent bytes after that line."""
        if len(self._buffer) > self._scanned:
            return False
        ITLSTransport(self.transport).startTLS(creator)
        return True

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake is done; the state checks the peer's key."""
        self.state.tls_up()

    def line_received(self, line: bytes) -> None:
        self.last_seen = self.host.clock.seconds()
        if self.ready:
            # Every peer but the first announces a cheese to us: one we have is
            # ignored (section 5) before its line is decoded.
            seen = wire.announced_smell(line)
            if (
                seen is not None
                # ANNOUNCE_HEADER is an unknown type to a member not listing compact-modes
                and (seen[0] != "ANNOUNCE_HEADER" or COMPACT_MODES in self.host.features)
                and self.host.already_have(self, seen[1])
            ):
                if self.traffic is not None:
                    self.traffic("in", seen[0], len(line) + 1)
                return
            # The answer to our GET_COMPACT for a cheese a high-bandwidth peer brought
            # meanwhile (most of them): resolved as with its decoded line, whose handler
            # finds the cheese held and drops it, as it does an announcement of it.
            reply = wire.compact_reply_smell(line) if line.startswith(b'{"type":"C') else None
            if reply is not None and self.host.already_have(self, reply[1]):
                if self.traffic is not None:
                    self.traffic("in", "COMPACT", len(line) + 1)
                self.resolve({"type": "COMPACT", "id": reply[0], "header": {"smell": reply[1]}})
                return
            # The keep-alive (a third of a member's lines): read without the decoder,
            # handled as ReadyState's msg_PING and reply table do.
            keepalive = _KEEPALIVE.fullmatch(line) if line.startswith(b'{"type":"P') else None
            if keepalive is not None:
                kind, rid = keepalive.group(1), int(keepalive.group(2))
                if self.traffic is not None:
                    self.traffic("in", kind.decode("ascii"), len(line) + 1)
                if kind == b"PING":
                    self.write_line(b'{"type":"PONG","id":%d}\n' % rid)
                else:
                    self.resolve({"type": "PONG", "id": rid})
                return
            # The stack comparison (every 60 s a peer): likewise, as ReadyState's
            # msg_STATS and reply table do.
            stats = _STATS.fullmatch(line) if line.startswith(b'{"type":"STATS') else None
            if stats is not None:
                self.stats_line(stats)
                return
        super().line_received(line)

    def stats_line(self, stats: "re.Match[bytes]") -> None:
        """A STATS or STATS_REPLY line matched by ``_STATS`` (the fields are checked
        where the reply is read, as a decoded one's are)."""
        height, tip, work, peers, rid = stats.groups()
        if self.traffic is not None:
            self.traffic("in", "STATS" if height is None else "STATS_REPLY", len(stats[0]) + 1)
        if height is None:
            self.write_line(self.host.server.stats_line(len(self.host.peers), int(rid)))
            return
        self.resolve(
            {
                "type": "STATS_REPLY",
                "height": int(height),
                "tip": tip.decode("ascii"),
                "work": work.decode("ascii"),
                "peers": int(peers),
                "id": int(rid),
            }
        )

    def dispatch(self, msg: dict) -> None:
        """Hand the message to its handler in the current state's ``cmd_map``."""
        handler = self.state.handler(msg["type"])
        if handler is None:
            self.state.unknown(msg)
        else:
            handler(msg)

    def become_ready(self) -> None:
        """The handshake is done: from now on the ready state handles messages."""
        self.state = ReadyState(self)
        self.ready = True

    # -- sending -------------------------------------------------------------------

    def write_line(self, data: bytes) -> None:
        """Write one pre-encoded line (a pushed message, no id)."""
        if self.transport is not None and not self.closing:
            self.write(data)

    def push(self, msg: dict) -> None:
        self.write_line(wire.dumps(msg))

    def send_hello(self) -> None:
        self.hello_sent = True
        self.push(self.host.hello_message())

    def request(self, msg: dict, timeout: float = REQUEST_TIMEOUT) -> Deferred:
        """Send a request with a fresh id; the Deferred fires with the reply message,
        or fails with RemoteError, RequestTimeout or ConnectionLost."""
        d: Deferred = Deferred()
        if self.transport is None or self.closing:
            d.errback(Failure(ConnectionLost("not connected")))
            return d
        self._next_id += 1
        rid = self._next_id
        call = self.host.clock.callLater(timeout, self._timed_out, rid)
        self.pending[rid] = (d, call)
        if msg.get("type") == "GET_PEERS":
            self.peer_requests.add(rid)
        self.write_line(wire.dumps(dict(msg, id=rid)))
        return d

    def ping(self) -> None:
        """A keep-alive PING (docs/protocol.md section 5). Its PONG only proves the
        peer alive (``last_seen``); a silent peer is dropped by the peer manager, so
        no Deferred or timer is kept for it."""
        if self.transport is not None and not self.closing:
            self._next_id += 1
            self.write(b'{"type":"PING","id":%d}\n' % self._next_id)

    def _timed_out(self, rid: int) -> None:
        self.peer_requests.discard(rid)
        entry = self.pending.pop(rid, None)
        if entry is not None:
            entry[0].errback(Failure(RequestTimeout(f"no reply from {self.label()} in time")))

    def resolve(self, msg: dict) -> None:
        """A reply: fire the Deferred of the request with its id (late or unknown ones
        are ignored)."""
        rid = msg.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            return
        entry = self.pending.pop(rid, None)
        if entry is None:
            return
        d, call = entry
        if call.active():
            call.cancel()
        if msg["type"] == "ERROR":
            d.errback(Failure(RemoteError(str(msg.get("code")), str(msg.get("message", ""))[:200])))
        else:
            d.callback(msg)

    def remote_error(self, msg: dict) -> None:
        """An ERROR from the peer: the reply to one of our requests, or logged."""
        if isinstance(msg.get("id"), int) and msg["id"] in self.pending:
            self.resolve(msg)
            return
        self.host.log.info(
            "{peer} says: ERROR {code} {text}",
            peer=self.label(),
            code=str(msg.get("code"))[:40],
            text=str(msg.get("message", ""))[:200],
        )

    # -- misbehaviour ------------------------------------------------------------------

    def on_error(self, code: str, text: str, points: Optional[int] = None) -> None:
        """Each ERROR we send: the peer pays the points its error carried
        (``ProtocolError.points``), else those of its code (ERROR_POINTS)."""
        if points is None:
            points = ERROR_POINTS.get(code, 0)
        if points:
            self.misbehaved(points, f"{code}: {text}")
        if self.state.closes_on_error and not self.closing:
            self.close()  # e.g. a line that is not even JSON during the STARTTLS exchange

    def misbehaved(self, points: int, why: str) -> None:
        """Add to the peer's misbehaviour score; at BAN_SCORE it is banned (or closed)."""
        self.score += points
        if self.score >= BAN_SCORE and not self.closing:
            self.host.ban(self, why)
