# The states of a member connection: docs/protocol.md sections 5, 5.1 and 5.2.
#
# Messages they speak (the table of each state is its ``cmd_map``):
#   HandshakeState: HELLO (with ``features``), ERROR; anything else is
#     ERROR handshake-required.
#   ReadyState:
#     requests we answer: STATS, GET_CHEESE, GET_CHEESES (from, locator, smells),
#       GET_HEADERS, GET_PEERS, PING, GET_MEMPOOL, GET_TXS, GET_COMPACT
#     pushed: ANNOUNCE, ANNOUNCE_COMPACT, TX, CONSENSUS, INV, SEND_COMPACT,
#       ANNOUNCE_HEADER
#     replies to our requests: STATS_REPLY, CHEESE, CHEESES, HEADERS, PEERS, PONG,
#       MEMPOOL, TXS, COMPACT, ERROR
#     a second HELLO is bad-message, STARTTLS out of turn closes the connection.
#   StartTlsState (cheesecoin.p2p.tls, section 5.3): STARTTLS, ERROR.
"""The states of a member connection (after hathor-core's ``p2p/states``).

A connection starts in ``HandshakeState``, which accepts only ``HELLO`` (and
logs an ``ERROR``); anything else is ``handshake-required``. Once the HELLOs
are exchanged it is in ``ReadyState``. Each state's ``cmd_map`` (hathor's
name) is its table from message type to handler: every ``msg_<TYPE>`` method,
and each type of ``replies``, whose handler is the one that resolves the
request waiting for it. The names are found once per class; a handler is
bound to its state when a message asks for it (``handler``), so that a
connection holds no table of bound methods (160,000 simulated connections
held 4.6 million of them). A handler turns
the message's fields into one named call (as Twisted's ``irc_PRIVMSG`` calls
``privmsg``): of the member side (``PeerHost``), of the stack's server
(``StackServer``) or of the connection. A new message type is a new ``msg_``
method (or a name in ``replies``); a message of a section 5.2 feature we do
not list is an unknown type.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, FrozenSet, Mapping, Optional

from twisted.python.failure import Failure

from cheesecoin.core.errors import ProtocolError
from cheesecoin.p2p.features import COMPACT_MODES, INV
from cheesecoin.p2p.fields import (
    get_features,
    get_locator,
    get_node_id,
    get_smells,
    get_txids,
    get_work,
)
from cheesecoin.p2p.mempool_sync import TXS_PER_REQUEST
from cheesecoin.p2p.serving import MAX_HEADERS, MAX_SMELLS
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import MAX_COUNT, PEERS_PER_REPLY

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

Handler = Callable[[dict], None]


def handler_names(cls: type) -> Dict[str, str]:
    """Message type -> the name of its ``msg_<TYPE>`` method, of the class ``cls``."""
    return {name[4:]: name for name in sorted(dir(cls)) if name.startswith("msg_")}


class ConnectionState:
    """What every state of a member connection has: its connection, the member
    side (``PeerHost``) and its table of handlers (``cmd_map``: the class's
    ``msg_<TYPE>`` methods, found once per class, and each type of ``replies``,
    resolved as the reply to a request of ours)."""

    closes_on_error = False  # an ERROR we send leaves the connection open
    replies: FrozenSet[str] = frozenset()  # reply types handed to the request waiting
    _handlers: ClassVar[Dict[str, str]] = {}  # message type -> method name (per class)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = handler_names(cls)

    def __init__(self, protocol: MemberProtocol) -> None:
        self.protocol = protocol
        self.host = protocol.host

    def handler(self, kind: Any) -> Optional[Handler]:
        """The handler of a message of type ``kind`` in this state (its ``msg_``
        method, bound to it, else the request resolver for a reply type), or None."""
        name = self._handlers.get(kind)
        if name is not None:
            return getattr(self, name)
        if kind in self.replies:
            return self.protocol.resolve
        return None

    @property
    def cmd_map(self) -> Mapping[str, Handler]:
        """The whole table, message type -> handler (``handler`` for each type), read
        only: a handler is changed on the state (its ``msg_`` method), not here."""
        table: Dict[str, Handler] = {}
        for kind in (*self._handlers, *self.replies):
            handler = self.handler(kind)
            if handler is not None:
                table[kind] = handler
        return MappingProxyType(table)

    def unknown(self, msg: dict) -> None:
        raise ProtocolError("unknown-type", f"unknown message type {msg['type'][:40]!r}")

    def connection_lost(self, reason: Optional[Failure]) -> None:
        """The connection closed (called before it marks itself closing)."""

    def tls_up(self) -> None:
        """The TLS handshake completed (only the TLS exchange has begun one)."""


class HandshakeState(ConnectionState):
    """Before the handshake: only HELLO."""

    def unknown(self, msg: dict) -> None:
        raise ProtocolError("handshake-required", "send HELLO first")

    def msg_ERROR(self, msg: dict) -> None:
        self.protocol.remote_error(msg)

    def msg_HELLO(self, msg: dict) -> None:
        network = wire.get_smell(msg, "network")
        ours = self.host.network_smell
        if network != ours:
            self.protocol.send_error("wrong-network", f"this member is on network {ours}")
            self.protocol.close()
            return
        wire.get_int(msg, "version", 1)
        node_id = get_node_id(msg)
        port = wire.get_port(msg, "port", allow_null=True)
        height = wire.get_int(msg, "height")
        tip = wire.get_smell(msg, "tip")
        work = get_work(msg)
        self.protocol.hello(node_id, port, get_features(msg))
        self.protocol.claim(height, tip, work)
        self.hello_read()

    def hello_read(self) -> None:
        """The peer's HELLO is read: ourselves, refused, TLS first, or a peer now."""
        p, host = self.protocol, self.host
        if p.peer_node_id == host.node_id:
            host.connected_to_self(p)
            p.close()
            return
        if host.tls is not None and host.tls.intercept(p):
            return  # refused (a pin, --require-tls), or encrypted first (section 5.3)
        if not host.accept_peer(p):
            p.close()
            return
        if not p.hello_sent:
            p.send_hello()
        p.become_ready()
        host.peer_ready(p)


class ReadyState(ConnectionState):
    """After the handshake: requests, pushed messages and replies."""

    replies = frozenset(
        {"STATS_REPLY", "CHEESE", "CHEESES", "HEADERS", "PONG", "MEMPOOL", "TXS", "COMPACT"}
    )

    def msg_HELLO(self, msg: dict) -> None:
        raise wire.BadMessage("a second HELLO")

    def msg_STARTTLS(self, msg: dict) -> None:
        self.protocol.send_error("bad-message", "STARTTLS only right after two HELLOs listing tls")
        self.protocol.close()

    # -- requests we answer -------------------------------------------------------------

    def msg_STATS(self, msg: dict) -> None:
        stats = self.host.server.stats_line(len(self.host.peers), wire.message_id(msg))
        self.protocol.write_line(stats)

    def msg_GET_CHEESE(self, msg: dict) -> None:
        server, msg_id = self.host.server, wire.message_id(msg)
        if "sequence_number" in msg:
            line = server.cheese_at(wire.get_int(msg, "sequence_number"), msg_id)
        else:
            line = server.cheese_by_smell(wire.get_smell(msg, "smell"), msg_id)
        self.protocol.write_line(line)

    def msg_GET_CHEESES(self, msg: dict) -> None:
        server, msg_id = self.host.server, wire.message_id(msg)
        if "smells" in msg:  # section 5.1, feature headers: bodies by smell, any branch
            line = server.cheeses_by_smell(get_smells(msg, MAX_SMELLS), msg_id)
        else:
            count = wire.get_int(msg, "count", 1, MAX_COUNT, default=MAX_COUNT)
            if "locator" in msg:
                line = server.cheeses_after(get_locator(msg), count, msg_id)
            else:
                line = server.cheeses_from(wire.get_int(msg, "from"), count, msg_id)
        self.protocol.write_line(line)

    def msg_GET_HEADERS(self, msg: dict) -> None:
        locator = get_locator(msg)
        count = wire.get_int(msg, "count", 1, MAX_HEADERS, default=MAX_HEADERS)
        headers = self.host.server.headers_after(locator, count)
        self.protocol.reply(msg, {"type": "HEADERS", "headers": headers})

    def msg_GET_PEERS(self, msg: dict) -> None:
        self.protocol.reply(msg, {"type": "PEERS", "peers": self.host.peers_for(self.protocol)})

    def msg_PING(self, msg: dict) -> None:
        msg_id = msg.get("id")
        if type(msg_id) is int:  # the usual keep-alive: its reply, without the encoder
            self.protocol.write_line(b'{"type":"PONG","id":%d}\n' % msg_id)
        else:
            self.protocol.reply(msg, {"type": "PONG"})

    def msg_GET_MEMPOOL(self, msg: dict) -> None:
        self.protocol.reply(msg, {"type": "MEMPOOL", "txids": self.host.mempool_txids()})

    def msg_GET_TXS(self, msg: dict) -> None:
        txids = get_txids(msg, "txids", TXS_PER_REQUEST)
        smell = wire.get_smell(msg, "smell") if "smell" in msg else None
        self.protocol.reply(msg, {"type": "TXS", "transactions": self.host.find_txs(txids, smell)})

    # -- pushed messages --------------------------------------------------------------

    def msg_ANNOUNCE(self, msg: dict) -> None:
        self.host.receive_cheese(self.protocol, wire.get_object(msg, "cheese"))

    def msg_ANNOUNCE_COMPACT(self, msg: dict) -> None:
        self.host.receive_compact(self.protocol, msg)

    def msg_TX(self, msg: dict) -> None:
        self.host.receive_tx(self.protocol, wire.get_object(msg, "tx"))

    def msg_CONSENSUS(self, msg: dict) -> None:
        self.host.consensus_asked(self.protocol)

    # -- section 5.2 ------------------------------------------------------------------

    def _listed(self, feature: str, msg: dict) -> None:
        """A message of a feature we do not list is an unknown type to us."""
        if feature not in self.host.features:
            self.unknown(msg)

    def msg_INV(self, msg: dict) -> None:
        self._listed(INV, msg)
        self.host.receive_inv(self.protocol, msg)

    def msg_SEND_COMPACT(self, msg: dict) -> None:
        self._listed(COMPACT_MODES, msg)
        flag = msg.get("high_bandwidth")
        if not isinstance(flag, bool):
            raise wire.BadMessage("field 'high_bandwidth' must be true or false")
        self.host.compact_mode(self.protocol, flag)

    def msg_ANNOUNCE_HEADER(self, msg: dict) -> None:
        self._listed(COMPACT_MODES, msg)
        self.host.receive_header(self.protocol, msg)

    def msg_GET_COMPACT(self, msg: dict) -> None:
        self._listed(COMPACT_MODES, msg)
        compact = self.host.compact_of(wire.get_smell(msg, "smell"))
        if compact is None:
            raise ProtocolError("not-found", "no such cheese here")
        self.protocol.reply(msg, compact)

    # -- replies to our requests (the others: ``replies``) ----------------------------

    def msg_PEERS(self, msg: dict) -> None:
        # Only the reply to a GET_PEERS of ours, and at most PEERS_PER_REPLY of it:
        # unsolicited PEERS would let one peer rewrite our address book.
        rid = msg.get("id")
        peers = msg.get("peers")
        if isinstance(rid, int) and rid in self.protocol.peer_requests and isinstance(peers, list):
            self.protocol.peer_requests.discard(rid)
            self.host.add_addresses(peers[:PEERS_PER_REPLY], self.protocol.peer_host() or "peer")
        self.protocol.resolve(msg)

    def msg_ERROR(self, msg: dict) -> None:
        self.protocol.remote_error(msg)
