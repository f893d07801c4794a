"""The states of a member connection (after hathor-core's ``p2p/states``).

A connection starts in ``HandshakeState``, which accepts only ``HELLO`` (and
logs an ``ERROR``); anything else is ``handshake-required``. Once the HELLOs
are exchanged it is in ``ReadyState``, whose ``msg_<TYPE>`` methods are the
member protocol of docs/protocol.md section 5: requests answered, pushed
messages handed to the relay, replies handed back to the request that is
waiting for them. A new message type is a new ``msg_`` method here.

Messages: HELLO (with ``features``); requests STATS, GET_CHEESE, GET_CHEESES,
GET_PEERS, PING, and of section 5.1 GET_HEADERS and GET_CHEESES by smells
(``headers``), GET_MEMPOOL and GET_TXS (``mempool``, ``compact``); pushed
ANNOUNCE, ANNOUNCE_COMPACT (``compact``), TX and CONSENSUS; replies
STATS_REPLY, CHEESE, CHEESES, HEADERS, PEERS, PONG, MEMPOOL, TXS, ERROR.
Section 5.2: pushed INV (``inv``), SEND_COMPACT and ANNOUNCE_HEADER, request
GET_COMPACT and its reply COMPACT (``compact-modes``); a message of a section
5.2 feature we do not list is an unknown type.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cheesecoin.core.errors import ProtocolError
from cheesecoin.p2p.compact import MAX_HEADERS, MAX_SMELLS
from cheesecoin.p2p.mempool_sync import TXS_PER_REQUEST, get_txids
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import MAX_COUNT, PEERS_PER_REPLY

MAX_LOCATOR = 1000  # smells in a locator we accept
MAX_FEATURES = 32  # names in a HELLO's features (section 5.1)
MAX_FEATURE_LENGTH = 32
NODE_ID_RE = re.compile(r"[0-9a-f]{1,64}\Z")
_WORK_RE = re.compile(r"[0-9]{1,80}\Z")


def get_work(msg: dict, key: str = "work") -> int:
    value = wire.get_str(msg, key, 80)
    if not _WORK_RE.match(value):
        raise wire.BadMessage(f"field '{key}' must be a decimal string")
    return int(value)


def get_locator(msg: dict) -> list:
    locator = msg.get("locator")
    if not isinstance(locator, list) or len(locator) > MAX_LOCATOR:
        raise wire.BadMessage(f"field 'locator' must be a list of at most {MAX_LOCATOR} smells")
    if not all(isinstance(s, str) and wire.SMELL_RE.match(s) for s in locator):
        raise wire.BadMessage("field 'locator' must hold smells (40 lowercase hex characters)")
    return locator


def id_suffix(msg_id: Any) -> str:
    return "" if msg_id is None else ',"id":' + json.dumps(msg_id, ensure_ascii=False)


def get_features(msg: dict) -> frozenset:
    """The ``features`` of a HELLO (section 5.1): none when absent; unknown names are kept and ignored."""
    if "features" not in msg:
        return frozenset()
    value = msg["features"]
    if (
        not isinstance(value, list)
        or len(value) > MAX_FEATURES
        or not all(isinstance(f, str) and len(f) <= MAX_FEATURE_LENGTH for f in value)
    ):
        raise wire.BadMessage(
            f"field 'features' must be a list of at most {MAX_FEATURES} strings "
            f"of at most {MAX_FEATURE_LENGTH} characters"
        )
    return frozenset(value)


class HandshakeState:
    """Before the handshake: only HELLO."""

    closes_on_error = False  # an ERROR we send leaves the connection open

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.manager = protocol.manager

    def unknown(self, msg: dict) -> None:
        raise ProtocolError("handshake-required", "send HELLO first")

    def msg_ERROR(self, msg: dict) -> None:
        self.protocol.remote_error(msg)

    def msg_HELLO(self, msg: dict) -> None:
        p = self.protocol
        network = wire.get_smell(msg, "network")
        if network != self.manager.node.network.smell:
            p.send_error(
                "wrong-network", f"this member is on network {self.manager.node.network.smell}"
            )
            p.close()
            return
        wire.get_int(msg, "version", 1)
        node_id = wire.get_str(msg, "node_id", 64)
        if not NODE_ID_RE.match(node_id):
            raise wire.BadMessage("field 'node_id' must be 1 to 64 lowercase hex characters")
        port = wire.get_port(msg, "port", allow_null=True)
        height = wire.get_int(msg, "height")
        tip = wire.get_smell(msg, "tip")
        work = get_work(msg)
        p.peer_features = get_features(msg)
        p.peer_node_id, p.peer_port = node_id, port
        p.peer_height, p.peer_tip, p.peer_work = height, tip, work
        if node_id == self.manager.node.node_id:
            self.manager.connected_to_self(p)
            p.close()
            return
        if self.manager.tls is not None and self.manager.tls.intercept(p):
            return  # refused (a pin, --require-tls), or encrypted first (section 5.3)
        if not self.manager.accept_peer(p):
            p.close()
            return
        if not p.hello_sent:
            p.send_hello()
        p.become_ready()
        self.manager.peer_ready(p)


class ReadyState:
    """After the handshake: requests, pushed messages and replies."""

    closes_on_error = False  # an ERROR we send leaves the connection open

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.manager = protocol.manager

    def unknown(self, msg: dict) -> None:
        raise ProtocolError("unknown-type", f"unknown message type {msg['type'][:40]!r}")

    def msg_HELLO(self, msg: dict) -> None:
        raise wire.BadMessage("a second HELLO")

    def msg_STARTTLS(self, msg: dict) -> None:
        self.protocol.send_error("bad-message", "STARTTLS only right after two HELLOs listing tls")
        self.protocol.close()

    # -- requests we answer -------------------------------------------------------------

    def msg_STATS(self, msg: dict) -> None:
        stack = self.manager.node.stack
        self.protocol.reply(
            msg,
            {
                "type": "STATS_REPLY",
                "height": stack.height,
                "tip": stack.tip.smell,
                "work": str(stack.work),
                "peers": len(self.manager.peers),
            },
        )

    def msg_GET_CHEESE(self, msg: dict) -> None:
        stack = self.manager.node.stack
        if "sequence_number" in msg:
            height = wire.get_int(msg, "sequence_number")
            text = (
                stack.get_text(stack.main[height].smell, cache=False)
                if height <= stack.height
                else None
            )
        else:
            text = stack.get_text(wire.get_smell(msg, "smell"), cache=False)
        if text is None:
            raise ProtocolError("not-found", "no such cheese here")
        self.protocol.write_line(
            ('{"type":"CHEESE","cheese":' + text + id_suffix(wire.message_id(msg)) + "}\n").encode(
                "utf-8"
            )
        )

    def msg_GET_CHEESES(self, msg: dict) -> None:
        stack = self.manager.node.stack
        if "smells" in msg:  # section 5.1, feature headers: bodies by smell, any branch
            smells = msg["smells"]
            if (
                not isinstance(smells, list)
                or not 1 <= len(smells) <= MAX_SMELLS
                or not all(isinstance(x, str) and wire.SMELL_RE.match(x) for x in smells)
            ):
                raise wire.BadMessage(f"field 'smells' must be a list of 1 to {MAX_SMELLS} smells")
            texts = self.manager.compact.cheeses_by_smell(smells)
            self.protocol.write_line(
                (
                    '{"type":"CHEESES","cheeses":['
                    + ",".join(texts)
                    + "]"
                    + id_suffix(wire.message_id(msg))
                    + "}\n"
                ).encode("utf-8")
            )
            return
        count = wire.get_int(msg, "count", 1, MAX_COUNT, default=MAX_COUNT)
        if "locator" in msg:
            start = stack.fork_height(get_locator(msg)) + 1
        else:
            start = wire.get_int(msg, "from")
        head = '{"type":"CHEESES","cheeses":['
        tail = "]" + id_suffix(wire.message_id(msg)) + "}"
        room = wire.MAX_LINE - len(head) - len(tail.encode("utf-8"))
        texts = stack.range_texts(start, count, max_bytes=room) if room > 0 else []
        self.protocol.write_line((head + ",".join(texts) + tail + "\n").encode("utf-8"))

    def msg_GET_HEADERS(self, msg: dict) -> None:
        locator = get_locator(msg)
        count = wire.get_int(msg, "count", 1, MAX_HEADERS, default=MAX_HEADERS)
        self.protocol.reply(
            msg, {"type": "HEADERS", "headers": self.manager.compact.headers_after(locator, count)}
        )

    def msg_GET_PEERS(self, msg: dict) -> None:
        self.protocol.reply(msg, {"type": "PEERS", "peers": self.manager.peers_for(self.protocol)})

    def msg_PING(self, msg: dict) -> None:
        msg_id = msg.get("id")
        if type(msg_id) is int:  # the usual keep-alive: its reply, without the encoder
            self.protocol.write_line(b'{"type":"PONG","id":%d}\n' % msg_id)
        else:
            self.protocol.reply(msg, {"type": "PONG"})

    def msg_GET_MEMPOOL(self, msg: dict) -> None:
        self.protocol.reply(
            msg, {"type": "MEMPOOL", "txids": self.manager.mempool_sync.mempool_txids()}
        )

    def msg_GET_TXS(self, msg: dict) -> None:
        txids = get_txids(msg, "txids", TXS_PER_REQUEST)
        smell = wire.get_smell(msg, "smell") if "smell" in msg else None
        self.protocol.reply(
            msg, {"type": "TXS", "transactions": self.manager.mempool_sync.find_txs(txids, smell)}
        )

    # -- pushed messages --------------------------------------------------------------

    def msg_ANNOUNCE_COMPACT(self, msg: dict) -> None:
        self.manager.compact.receive(self.protocol, msg)

    # -- section 5.2 ------------------------------------------------------------------

    def _listed(self, feature: str, msg: dict) -> None:
        """A message of a feature we do not list is an unknown type to us."""
        if feature not in self.manager.features:
            self.unknown(msg)

    def msg_INV(self, msg: dict) -> None:
        self._listed("inv", msg)
        self.manager.inventory.receive(self.protocol, msg)

    def msg_SEND_COMPACT(self, msg: dict) -> None:
        self._listed("compact-modes", msg)
        self.manager.modes.send_compact(self.protocol, msg)

    def msg_ANNOUNCE_HEADER(self, msg: dict) -> None:
        self._listed("compact-modes", msg)
        self.manager.modes.receive_header(self.protocol, msg)

    def msg_GET_COMPACT(self, msg: dict) -> None:
        self._listed("compact-modes", msg)
        compact = self.manager.modes.compact_of(wire.get_smell(msg, "smell"))
        if compact is None:
            raise ProtocolError("not-found", "no such cheese here")
        self.protocol.reply(msg, compact)

    def msg_COMPACT(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_CONSENSUS(self, msg: dict) -> None:
        self.manager.consensus_asked(self.protocol)

    def msg_ANNOUNCE(self, msg: dict) -> None:
        self.manager.relay.receive_cheese(self.protocol, wire.get_object(msg, "cheese"))

    def msg_TX(self, msg: dict) -> None:
        self.manager.relay.receive_tx(self.protocol, wire.get_object(msg, "tx"))

    # -- replies to our requests ----------------------------------------------------------

    def msg_STATS_REPLY(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_CHEESE(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_CHEESES(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_PONG(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_HEADERS(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_MEMPOOL(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_TXS(self, msg: dict) -> None:
        self.protocol.resolve(msg)

    def msg_PEERS(self, msg: dict) -> None:
        # Only the reply to a GET_PEERS of ours, and at most PEERS_PER_REPLY of it:
        # unsolicited PEERS would let one peer rewrite our address book.
        rid = msg.get("id")
        peers = msg.get("peers")
        if isinstance(rid, int) and rid in self.protocol.peer_requests and isinstance(peers, list):
            self.protocol.peer_requests.discard(rid)
            self.manager.add_addresses(peers[:PEERS_PER_REPLY], self.protocol.peer_host() or "peer")
        self.protocol.resolve(msg)

    def msg_ERROR(self, msg: dict) -> None:
        self.protocol.remote_error(msg)
