# The CheeseCoin member protocol: member to member, docs/protocol.md section 5.
#
# Messages it speaks (JSON lines, docs/protocol.md section 1), request -> reply:
#
#   {"type":"HELLO","version":1,"network":SMELL,"node_id":HEX,"port":P|null,
#    "height":N,"tip":SMELL,"work":"DECIMAL"}     the handshake; the connecting
#                                                 side sends it first, the
#                                                 accepting side answers with
#                                                 its own
#   {"type":"STATS"}                           -> STATS_REPLY {height, tip, work, peers}
#   {"type":"GET_CHEESE","sequence_number":N}  -> CHEESE {cheese} or ERROR not-found
#   {"type":"GET_CHEESE","smell":S}            -> CHEESE {cheese} or ERROR not-found
#   {"type":"GET_CHEESES","from":N,"count":K}  -> CHEESES {cheeses}: best stack from N
#   {"type":"GET_CHEESES","locator":[S..],"count":K} -> CHEESES after the first locator
#                                                 smell on the best stack
#   {"type":"GET_PEERS"}                       -> PEERS {peers: [{host, port}]}
#   {"type":"PING"}                            -> PONG
#
#   Pushed, no reply on success:
#   {"type":"ANNOUNCE","cheese":C}   a new cheese; ERROR invalid-cheese if invalid,
#                                    an orphan makes us fetch its ancestors from
#                                    the announcer with a locator
#   {"type":"TX","tx":T}             a new transaction; ERROR invalid-tx if invalid,
#                                    ERROR busy if the mempool is full
#
#   Errors we send: bad-json, bad-message, unknown-type, too-long (framing,
#   see cheesecoin.lineproto), handshake-required, wrong-network, not-found,
#   invalid-cheese, invalid-tx, busy. We never answer an ERROR or a reply.
#
# The asking side matches STATS_REPLY / CHEESE / CHEESES / PEERS / PONG and
# ERROR replies to its requests by "id", with a timeout per request.
"""The member's peer-to-peer side: ``MemberProtocol`` (one connection),
``MemberFactory`` (the peer manager: connections, relaying, misbehaviour,
dialing) and ``Download`` (pipelined sync from one peer by locator)."""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter, OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import wire
from .errors import InvalidCheese, InvalidTx, ProtocolError, StorageError
from .lineproto import BusyProtocol, JsonLineProtocol, is_loopback
from .node import MemberNode
from .stack import AddResult
from .tx import check_tx_format, txid, verify_signature

DEFAULT_PORT = 24331
PROTOCOL_VERSION = 1
MAX_COUNT = 500  # cheeses per GET_CHEESES (docs/protocol.md section 5)
PEERS_PER_REPLY = 10
PING_INTERVAL = 30.0
SILENCE_TIMEOUT = 90.0
STATS_INTERVAL = 60.0
REFILL_INTERVAL = 5.0
REQUEST_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 30.0
RELAY_TAIL = 10  # cheeses announced after a sync batch
BAN_SCORE = 100
BAN_SECONDS = 3600.0
MAX_LOCATOR = 1000
MAX_KNOWN_ADDRESSES = 2000
SYNC_LOG_THRESHOLD = 500  # log progress when a download is at least this long
MAX_QUEUED_CHUNKS = 2  # downloaded chunks waiting to be checked, at most
FLUSH_DELAY = 0.05  # seconds between accepting an announced cheese and the fsync
# Eviction (a new inbound connection when max_inbound are open): these are never evicted.
EVICT_PROTECT_DELIVERERS = 4  # the inbound peers that most recently gave us a new cheese
EVICT_PROTECT_OLDEST = 4  # the longest-connected handshaken inbound peers

Address = Tuple[str, int]

# Misbehaviour points per ERROR code we had to send (see MemberProtocol.on_error).
ERROR_POINTS = {
    "bad-json": 10,
    "bad-message": 10,
    "unknown-type": 5,
    "too-long": 50,
    "handshake-required": 10,
    "invalid-cheese": 25,
    "invalid-tx": 10,
}
STALE_TX_RULES = frozenset({"tx-nonce", "tx-balance", "tx-fee"})  # honest races, a light penalty
_NODE_ID_RE = re.compile(r"[0-9a-f]{1,64}\Z")
_WORK_RE = re.compile(r"[0-9]{1,80}\Z")


class RequestTimeout(Exception):
    """A request to a peer got no reply in time."""


class RemoteError(Exception):
    """A peer answered a request with ERROR."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def short(smell: str) -> str:
    """A smell shortened for log lines."""
    return smell[:12] + "..."


def node_id_key(node_id: str) -> Tuple[int, str]:
    """Order of node ids: numerically (they are hex), then as text."""
    return (int(node_id, 16), node_id)


def _get_work(msg: dict, key: str = "work") -> int:
    value = wire.get_str(msg, key, 80)
    if not _WORK_RE.match(value):
        raise wire.BadMessage(f"field '{key}' must be a decimal string")
    return int(value)


def _id_suffix(msg_id: Any) -> str:
    return "" if msg_id is None else ',"id":' + json.dumps(msg_id, ensure_ascii=False)


def signed_cheeses(cheeses: List[dict], offset: int = 0) -> Set[int]:
    """Indices (plus ``offset``) of the cheeses whose transactions are all
    correctly signed. Pure; runs in worker threads during a sync. Their shape
    is not checked here: the stack checks every other rule of those cheeses."""
    out = set()
    for i, cheese in enumerate(cheeses):
        info = cheese.get("unit_of_information")
        txs = info.get("transactions") if isinstance(info, dict) else None
        try:
            if isinstance(txs, list) and all(verify_signature(tx) for tx in txs):
                out.add(i + offset)
        except (TypeError, KeyError, ValueError, AttributeError):
            pass  # malformed: checked (and refused) by the stack
    return out


class MemberProtocol(JsonLineProtocol):
    """One connection to another member, either direction."""

    manager: "MemberFactory"

    def __init__(self, manager: "MemberFactory", outbound: bool, dial_address: Optional[Address] = None) -> None:
        super().__init__()
        self.manager = manager
        self.clock = manager.clock
        self.outbound = outbound
        self.dial_address = dial_address
        self.ready = False  # handshake done
        self.hello_sent = False
        self.peer_node_id: Optional[str] = None
        self.peer_port: Optional[int] = None
        self.peer_height = 0
        self.peer_tip = ""
        self.peer_work = 0
        self.score = 0
        self.connected_at = 0.0
        self.last_seen = 0.0
        self.last_cheese_at = 0.0  # when this peer last gave us a cheese new to us (eviction)
        self.cheeses_delivered = 0
        self.sync_idle_until = 0.0
        self.download: Optional["Download"] = None
        self.pending: Dict[int, Tuple[Deferred, Any]] = {}
        self.peer_requests: Set[int] = set()  # ids of our GET_PEERS still unanswered
        self._next_id = 0
        self._penalty: Optional[int] = None

    # -- connection --------------------------------------------------------------

    def connectionMade(self) -> None:
        now = self.manager.clock.seconds()
        self.connected_at = self.last_seen = now
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:  # announcements are small: do not let Nagle hold them back
            try:
                set_no_delay(True)
            except OSError:
                pass
        self.start_producing()  # a peer that does not read what we send is not read from either
        self.manager.connection_made(self)
        if self.outbound:
            self.send_hello()

    def connectionLost(self, reason: Failure = None) -> None:
        self.closing = True
        pending, self.pending = self.pending, {}
        for d, call in pending.values():
            if call.active():
                call.cancel()
            d.errback(Failure(ConnectionLost("the connection to the peer closed")))
        self.manager.connection_lost(self)

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

    def line_received(self, line: bytes) -> None:
        self.last_seen = self.manager.clock.seconds()
        super().line_received(line)

    def dispatch(self, msg: dict) -> None:
        if not self.ready and msg["type"] != "HELLO":
            if msg["type"] == "ERROR":
                self.msg_ERROR(msg)
                return
            raise ProtocolError("handshake-required", "send HELLO first")
        super().dispatch(msg)

    # -- sending -------------------------------------------------------------------

    def write_line(self, data: bytes) -> None:
        """Write one pre-encoded line (a pushed message, no id)."""
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def push(self, msg: dict) -> None:
        self.write_line(wire.dumps(msg))

    def send_hello(self) -> None:
        self.hello_sent = True
        self.push(self.manager.hello_message())

    def request(self, msg: dict, timeout: float = REQUEST_TIMEOUT) -> Deferred:
        """Send a request with a fresh id; the Deferred fires with the reply message,
        or fails with RemoteError, RequestTimeout or ConnectionLost."""
        d: Deferred = Deferred()
        if self.transport is None or self.closing:
            d.errback(Failure(ConnectionLost("not connected")))
            return d
        self._next_id += 1
        rid = self._next_id
        call = self.manager.clock.callLater(timeout, self._timed_out, rid)
        self.pending[rid] = (d, call)
        if msg.get("type") == "GET_PEERS":
            self.peer_requests.add(rid)
        self.write_line(wire.dumps(dict(msg, id=rid)))
        return d

    def _timed_out(self, rid: int) -> None:
        self.peer_requests.discard(rid)
        entry = self.pending.pop(rid, None)
        if entry is not None:
            entry[0].errback(Failure(RequestTimeout(f"no reply from {self.label()} in time")))

    def _resolve(self, msg: dict) -> None:
        """A reply: fire the Deferred of the request with its id (late or unknown ones are ignored)."""
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

    # -- misbehaviour ------------------------------------------------------------------

    def on_error(self, code: str, text: str) -> None:
        points = self._penalty if self._penalty is not None else ERROR_POINTS.get(code, 0)
        self._penalty = None
        if points:
            self.misbehaved(points, f"{code}: {text}")

    def penalise_next_error(self, points: int) -> None:
        """Set the points the next ERROR we send costs this peer."""
        self._penalty = points

    def misbehaved(self, points: int, why: str) -> None:
        """Add to the peer's misbehaviour score; at BAN_SCORE it is banned (or closed)."""
        self.score += points
        if self.score >= BAN_SCORE and not self.closing:
            self.manager.ban(self, why)

    # -- the handshake ---------------------------------------------------------------

    def msg_HELLO(self, msg: dict) -> None:
        if self.ready:
            raise wire.BadMessage("a second HELLO")
        network = wire.get_smell(msg, "network")
        if network != self.manager.node.network.smell:
            self.send_error("wrong-network", f"this member is on network {self.manager.node.network.smell}")
            self.close()
            return
        wire.get_int(msg, "version", 1)
        node_id = wire.get_str(msg, "node_id", 64)
        if not _NODE_ID_RE.match(node_id):
            raise wire.BadMessage("field 'node_id' must be 1 to 64 lowercase hex characters")
        port = wire.get_port(msg, "port", allow_null=True)
        height = wire.get_int(msg, "height")
        tip = wire.get_smell(msg, "tip")
        work = _get_work(msg)
        self.peer_node_id, self.peer_port = node_id, port
        self.peer_height, self.peer_tip, self.peer_work = height, tip, work
        if node_id == self.manager.node.node_id:
            self.manager.connected_to_self(self)
            self.close()
            return
        if not self.manager.accept_peer(self):
            self.close()
            return
        if not self.hello_sent:
            self.send_hello()
        self.ready = True
        self.manager.peer_ready(self)

    # -- requests we answer -------------------------------------------------------------

    def msg_STATS(self, msg: dict) -> None:
        stack = self.manager.node.stack
        self.reply(
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
            text = stack.get_text(stack.main[height].smell) if height <= stack.height else None
        else:
            text = stack.get_text(wire.get_smell(msg, "smell"))
        if text is None:
            raise ProtocolError("not-found", "no such cheese here")
        self.write_line(('{"type":"CHEESE","cheese":' + text + _id_suffix(wire.message_id(msg)) + "}\n").encode("utf-8"))

    def msg_GET_CHEESES(self, msg: dict) -> None:
        stack = self.manager.node.stack
        count = wire.get_int(msg, "count", 1, MAX_COUNT, default=MAX_COUNT)
        if "locator" in msg:
            locator = msg["locator"]
            if not isinstance(locator, list) or len(locator) > MAX_LOCATOR:
                raise wire.BadMessage(f"field 'locator' must be a list of at most {MAX_LOCATOR} smells")
            if not all(isinstance(s, str) and wire.SMELL_RE.match(s) for s in locator):
                raise wire.BadMessage("field 'locator' must hold smells (40 lowercase hex characters)")
            start = stack.fork_height(locator) + 1
        else:
            start = wire.get_int(msg, "from")
        head = '{"type":"CHEESES","cheeses":['
        tail = "]" + _id_suffix(wire.message_id(msg)) + "}"
        room = wire.MAX_LINE - len(head) - len(tail.encode("utf-8"))
        texts = stack.range_texts(start, count, max_bytes=room) if room > 0 else []
        self.write_line((head + ",".join(texts) + tail + "\n").encode("utf-8"))

    def msg_GET_PEERS(self, msg: dict) -> None:
        self.reply(msg, {"type": "PEERS", "peers": self.manager.peers_for(self)})

    def msg_PING(self, msg: dict) -> None:
        self.reply(msg, {"type": "PONG"})

    # -- pushed messages --------------------------------------------------------------

    def msg_ANNOUNCE(self, msg: dict) -> None:
        self.manager.receive_cheese(self, wire.get_object(msg, "cheese"))

    def msg_TX(self, msg: dict) -> None:
        self.manager.receive_tx(self, wire.get_object(msg, "tx"))

    # -- replies to our requests ----------------------------------------------------------

    def msg_STATS_REPLY(self, msg: dict) -> None:
        self._resolve(msg)

    def msg_CHEESE(self, msg: dict) -> None:
        self._resolve(msg)

    def msg_CHEESES(self, msg: dict) -> None:
        self._resolve(msg)

    def msg_PONG(self, msg: dict) -> None:
        self._resolve(msg)

    def msg_PEERS(self, msg: dict) -> None:
        # Only the reply to a GET_PEERS of ours, and at most PEERS_PER_REPLY of it:
        # unsolicited PEERS would let one peer rewrite our address book.
        rid = msg.get("id")
        peers = msg.get("peers")
        if isinstance(rid, int) and rid in self.peer_requests and isinstance(peers, list):
            self.peer_requests.discard(rid)
            self.manager.add_addresses(peers[:PEERS_PER_REPLY], "peer")
        self._resolve(msg)

    def msg_ERROR(self, msg: dict) -> None:
        if isinstance(msg.get("id"), int) and msg["id"] in self.pending:
            self._resolve(msg)
            return
        self.manager.log.info(
            "{peer} says: ERROR {code} {text}",
            peer=self.label(),
            code=str(msg.get("code"))[:40],
            text=str(msg.get("message", ""))[:200],
        )


class Download:
    """Pipelined download of a peer's best stack by locator, in chunks of up to 500.

    As soon as a chunk arrives the next one is asked for (after the chunk's
    last smell), then the chunk is applied inside ``stack.batch()``. Ends on
    an empty chunk, at the peer's known tip, on invalid data, a stall or a
    lost connection; ``done`` fires with the number of cheeses added.
    """

    def __init__(self, manager: "MemberFactory", peer: MemberProtocol, reason: str, count: int = MAX_COUNT) -> None:
        self.manager = manager
        self.peer = peer
        self.reason = reason
        self.count = count
        self.finished = False
        self.added = 0
        self.received = 0
        self.last_smell: Optional[str] = None
        self.started = manager.clock.seconds()
        self.start_height = manager.node.stack.height
        self.done: Deferred = Deferred()
        self.long = peer.peer_height - self.start_height >= SYNC_LOG_THRESHOLD
        self._queue: List[_Chunk] = []  # received, signatures being checked or checked, not applied
        self._asking = False  # a GET_CHEESES is on its way
        self._more = True  # the peer has more to send

    def start(self) -> None:
        self.peer.download = self
        if self.long:
            self.manager.log.info(
                "Syncing from {peer}: {height}/{target} (0%)",
                peer=self.peer.label(),
                height=self.start_height,
                target=self.peer.peer_height,
            )
        self._ask(self.manager.node.stack.locator())

    def _ask(self, locator: List[str]) -> None:
        self._asking = True
        d = self.peer.request({"type": "GET_CHEESES", "locator": locator, "count": self.count})
        d.addCallbacks(self._got, self._failed)

    def _ask_next(self) -> None:
        """Pipelining: ask for the chunk after the last one received while earlier
        ones are checked, but hold at most MAX_QUEUED_CHUNKS unchecked ones."""
        if self._more and not self._asking and not self.finished and len(self._queue) < MAX_QUEUED_CHUNKS:
            self._ask([self.last_smell] + self.manager.node.stack.locator())  # type: ignore[list-item]

    def _failed(self, failure: Failure) -> None:
        self._asking = False
        if self.finished:
            return
        if failure.check(RequestTimeout):
            self.manager.log.info("Sync from {peer} stalled; trying another peer", peer=self.peer.label())
            self.peer.sync_idle_until = self.manager.clock.seconds() + STATS_INTERVAL
        elif not failure.check(ConnectionLost, RemoteError):
            self.manager.log.failure("Sync from {peer} failed", failure, peer=self.peer.label())
        self._stop_after_received()

    def _got(self, reply: dict) -> None:
        self._asking = False
        if self.finished:
            return
        cheeses = reply.get("cheeses")
        if not isinstance(cheeses, list) or len(cheeses) > self.count or not all(isinstance(c, dict) for c in cheeses):
            self.peer.misbehaved(50, "a malformed CHEESES reply")
            self.finish()
            return
        if not cheeses:  # the end
            self._stop_after_received()
            return
        last = cheeses[-1].get("smell")
        if (
            not isinstance(last, str)
            or not wire.SMELL_RE.match(last)
            or last == self.last_smell
            or any(cheeses[i].get("parent_smell") != cheeses[i - 1].get("smell") for i in range(1, len(cheeses)))
        ):
            self.peer.misbehaved(50, "a CHEESES reply that is not one chain moving forward")
            self.finish()
            return
        if self.last_smell is not None and cheeses[0].get("parent_smell") != self.last_smell:
            # Not after the last chunk: the peer's stack changed (or it plays
            # games, e.g. known cheeses in circles). Apply what came, then stop.
            self._stop_after_received()
            return
        self.last_smell = last
        at_end = last == self.peer.peer_tip
        self._more = not at_end
        self.received += len(cheeses)
        chunk = _Chunk(cheeses, at_end)
        self._queue.append(chunk)
        self._ask_next()  # before checking this chunk
        # Signatures are checked (in threads) as soon as a chunk arrives, while
        # the chunk before it is applied; chunks are applied in order.
        self.manager.verify_signatures(cheeses).addCallbacks(self._checked, self._broken, (chunk,))

    def _stop_after_received(self) -> None:
        """Ask for nothing more; finish once the chunks received are applied."""
        self._more = False
        self._queue.append(_Chunk([], True))
        self._drain()

    def _checked(self, signed: Set[int], chunk: "_Chunk") -> None:
        chunk.signed = signed
        self._drain()

    def _drain(self) -> None:
        """Apply the received chunks whose signatures are checked, in order."""
        while self._queue and not self.finished:
            chunk = self._queue[0]
            if not chunk.cheeses:
                self.finish()
                return
            if chunk.signed is None:
                return  # still being checked: _checked calls again
            self._queue.pop(0)
            self._ask_next()
            self._apply(chunk.signed, chunk.cheeses, chunk.at_end)

    def _broken(self, failure: Failure) -> None:
        self.manager.log.failure("Sync from {peer} failed", failure, peer=self.peer.label())
        self.finish()

    def _apply(self, signed: Set[int], cheeses: List[dict], at_end: bool) -> None:
        try:
            added, error = self.manager.apply_chunk(self.peer, cheeses, signed)
        except StorageError:  # our disk failed: the node reports it, once; stop here
            self.finish()
            return
        self.added += added
        if error is not None:
            if error.permanent:
                self.peer.misbehaved(ERROR_POINTS["invalid-cheese"], f"sent an invalid cheese: {error.message}")
            self.manager.log.info(
                "Sync from {peer} stopped: invalid cheese ({why})", peer=self.peer.label(), why=error.message
            )
            self.peer.sync_idle_until = self.manager.clock.seconds() + STATS_INTERVAL
            self.finish()
            return
        if self.long:
            height = self.manager.node.stack.height
            target = max(self.peer.peer_height, height, 1)
            self.manager.log.info(
                "Syncing from {peer}: {height}/{target} ({pct}%)",
                peer=self.peer.label(),
                height=height,
                target=target,
                pct=int(100 * height / target),
            )
        if at_end:
            self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.peer.download is self:
            self.peer.download = None
        if self.added == 0:
            self.peer.sync_idle_until = max(self.peer.sync_idle_until, self.manager.clock.seconds() + STATS_INTERVAL)
        elif self.long or self.added >= RELAY_TAIL:
            stack = self.manager.node.stack
            self.manager.log.info(
                "Synced from {peer}: {added} cheeses in {secs:.2f} s, height {height} tip {tip}",
                peer=self.peer.label(),
                added=self.added,
                secs=self.manager.clock.seconds() - self.started,
                height=stack.height,
                tip=short(stack.tip.smell),
            )
        self.done.callback(self.added)
        self.manager.download_finished(self)


class _Chunk:
    """A received CHEESES chunk; ``signed`` is set once its signatures are checked."""

    __slots__ = ("cheeses", "at_end", "signed")

    def __init__(self, cheeses: List[dict], at_end: bool) -> None:
        self.cheeses = cheeses
        self.at_end = at_end
        self.signed: Optional[Set[int]] = None


class _OutboundFactory(Factory):
    """Builds the protocol of a connection we dial."""

    noisy = False

    def __init__(self, manager: "MemberFactory", address: Address) -> None:
        self.manager = manager
        self.address = address

    def buildProtocol(self, addr: Any) -> MemberProtocol:
        return MemberProtocol(self.manager, outbound=True, dial_address=self.address)


class _AddressInfo:
    __slots__ = ("failures", "next_try", "confirmed")

    def __init__(self) -> None:
        self.failures = 0
        self.next_try = 0.0
        self.confirmed = False  # we completed a handshake with a member there


Dialer = Callable[[str, int, Factory], Deferred]


class MemberFactory(Factory):
    """The peer manager: accepts and dials members, keeps ``target_peers`` of them,
    relays new cheeses and transactions once, syncs from peers with more work,
    scores misbehaviour and bans by IP (never loopback; those are closed and
    their address is not redialled for the ban time), and with ``max_inbound``
    inbound connections open evicts the least useful one for a newcomer.

    ``reactor`` (an IReactorTime, a ``task.Clock`` in tests) drives every timer;
    ``dialer(host, port, factory) -> Deferred`` opens outbound connections.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        node: MemberNode,
        reactor: Optional[IReactorTime] = None,
        target_peers: int = 8,
        max_inbound: int = 32,
        max_per_ip: int = 64,
        dialer: Optional[Dialer] = None,
        rng: Optional[random.Random] = None,
        ban_seconds: float = BAN_SECONDS,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self.node = node
        self.clock = reactor
        self.reactor = reactor
        self.target_peers = target_peers
        self.max_inbound = max_inbound
        self.max_per_ip = max_per_ip
        self.dialer: Dialer = dialer or self._dial_tcp
        self.rng = rng or random.Random()
        self.ban_seconds = ban_seconds
        self.verify_in_threads = IReactorThreads.providedBy(reactor)
        self.listen_port: Optional[int] = None
        self.tracker: Any = None  # has request_peers()
        self.peers: Dict[str, MemberProtocol] = {}  # node_id -> handshaken connection
        self.connections: Set[MemberProtocol] = set()
        self.inbound_count = 0
        self.per_ip: Counter = Counter()
        self.known: "OrderedDict[Address, _AddressInfo]" = OrderedDict()
        self.persistent: Set[Address] = set()  # --connect addresses, always redialled
        self.dialing: Set[Address] = set()
        self.self_addresses: Set[Address] = set()
        self.banned: Dict[str, float] = {}
        self.announced: "OrderedDict[str, None]" = OrderedDict()
        self.refused = 0
        self._last_peer_request = -1e18
        self._batch_depth = 0
        self._batch: List[Tuple[int, str]] = []  # (height, smell) connected during a batch
        self._batch_source: Any = None
        self._lazy_batch: Any = None
        node.tip_listeners.append(self.on_tip)
        node.tx_listeners.append(self.on_tx)
        node.peers_info = self.peers_info

    # -- what we tell others ----------------------------------------------------------

    def hello_message(self) -> dict:
        stack = self.node.stack
        return {
            "type": "HELLO",
            "version": PROTOCOL_VERSION,
            "network": self.node.network.smell,
            "node_id": self.node.node_id,
            "port": self.listen_port,
            "height": stack.height,
            "tip": stack.tip.smell,
            "work": str(stack.work),
        }

    def peers_info(self) -> List[dict]:
        """The connected peers, for the HTTP API."""
        return [
            {
                "host": p.peer_host() or "?",
                "port": p.listening_address[1] if p.listening_address else None,
                "node_id": node_id,
                "height": p.peer_height,
                "inbound": not p.outbound,
            }
            for node_id, p in sorted(self.peers.items())
        ]

    def peers_for(self, asker: Optional[MemberProtocol]) -> List[dict]:
        """Up to 10 members we know to be listening, never the asker."""
        exclude = asker.listening_address if asker is not None else None
        found: Dict[Address, None] = {}
        for p in self.peers.values():
            address = p.listening_address
            if address is not None and p.peer_port:
                found[address] = None
        for address, info in self.known.items():
            if info.confirmed and info.failures == 0:
                found[address] = None
        found.pop(exclude, None)  # type: ignore[arg-type]
        for address in self.self_addresses:
            found.pop(address, None)
        picked = self.rng.sample(list(found), min(PEERS_PER_REPLY, len(found)))
        return [{"host": h, "port": p} for h, p in picked]

    # -- connections ------------------------------------------------------------------------

    def buildProtocol(self, addr: Any) -> Optional[Any]:
        host = getattr(addr, "host", None) or "?"
        if self.is_banned(host):
            return self._refuse(host, "the address is banned")
        # Many members and tools share a loopback address: per-address limits never apply to it.
        if self.per_ip[host] >= self.max_per_ip and not is_loopback(host):
            return self._refuse(host, f"{self.per_ip[host]} connections from {host} already")
        inbound = [p for p in self.connections if not p.outbound and not p.closing]
        if len(inbound) >= self.max_inbound:
            victim = self.eviction_candidate(inbound)
            if victim is None:
                return self._refuse(host, f"{len(inbound)} inbound connections already, none evictable")
            self.log.info("Evicting inbound peer {peer} for a new connection from {host}", peer=victim.label(), host=host)
            victim.abort()
        return MemberProtocol(self, outbound=False)

    def eviction_candidate(self, inbound: List[MemberProtocol]) -> Optional[MemberProtocol]:
        """The inbound peer to drop for a newcomer when max_inbound are open, or None.

        Protected: the EVICT_PROTECT_DELIVERERS peers that most recently gave us
        a new cheese, the EVICT_PROTECT_OLDEST longest-connected handshaken
        peers, and a peer we are downloading from. Of the others the worst goes:
        the highest misbehaviour score, then one still without a handshake,
        then one from the address with the most connections, then the newest.
        """
        protected = {id(p) for p in inbound if p.download is not None}
        deliverers = sorted((p for p in inbound if p.cheeses_delivered), key=lambda p: p.last_cheese_at)
        protected.update(id(p) for p in deliverers[-EVICT_PROTECT_DELIVERERS:] if EVICT_PROTECT_DELIVERERS)
        oldest = sorted((p for p in inbound if p.ready), key=lambda p: p.connected_at)
        protected.update(id(p) for p in oldest[:EVICT_PROTECT_OLDEST])
        candidates = [p for p in inbound if id(p) not in protected]
        if not candidates:
            return None
        return max(
            candidates,
            key=lambda p: (p.score, not p.ready, self.per_ip[p.peer_host() or "?"], p.connected_at),
        )

    def _refuse(self, host: str, why: str) -> BusyProtocol:
        """A connection turned away: it is told why (ERROR busy), then closed."""
        self.refused += 1
        if self.refused % 100 == 1:
            self.log.warn("Refused a connection from {host}: {why} ({n} refused so far)", host=host, why=why, n=self.refused)
        return BusyProtocol(why)

    def connection_made(self, proto: MemberProtocol) -> None:
        self.connections.add(proto)
        self.per_ip[proto.peer_host() or "?"] += 1
        if not proto.outbound:
            self.inbound_count += 1
        if proto.dial_address is not None:
            self.dialing.discard(proto.dial_address)

    def connection_lost(self, proto: MemberProtocol) -> None:
        if proto not in self.connections:
            return
        self.connections.discard(proto)
        host = proto.peer_host() or "?"
        self.per_ip[host] -= 1
        if self.per_ip[host] <= 0:
            del self.per_ip[host]
        if not proto.outbound:
            self.inbound_count -= 1
        if proto.download is not None:
            proto.download.finish()
        if proto.dial_address is not None and not proto.ready:
            self._dial_failed(proto.dial_address)
        if proto.peer_node_id is not None and self.peers.get(proto.peer_node_id) is proto:
            del self.peers[proto.peer_node_id]
            self.log.info(
                "Peer {peer} disconnected ({n} peers)", peer=proto.label(), n=len(self.peers)
            )
            self.maybe_sync()

    def connected_to_self(self, proto: MemberProtocol) -> None:
        if proto.dial_address is not None:
            self.self_addresses.add(proto.dial_address)
            self.known.pop(proto.dial_address, None)

    def accept_peer(self, proto: MemberProtocol) -> bool:
        """One connection per node_id: of two opened by different sides, keep the one
        opened by the smaller node_id; of two opened by the same side, the newer,
        except that a second inbound connection claiming the node_id of an inbound
        peer from another address is refused (an impostor would otherwise push
        that peer out; a real redial comes from the same address)."""
        node_id = proto.peer_node_id
        assert node_id is not None
        existing = self.peers.get(node_id)
        if existing is None or existing is proto:
            return True
        own = self.node.node_id

        def opener(p: MemberProtocol) -> str:
            return own if p.outbound else node_id  # type: ignore[return-value]

        if opener(existing) != opener(proto):
            smaller = min(own, node_id, key=node_id_key)
            if opener(proto) != smaller:
                return False
        elif not proto.outbound and existing.peer_host() != proto.peer_host():
            self.log.info(
                "Refused {peer}: node id {node_id} is connected from {other}", peer=proto.label(),
                node_id=node_id[:16], other=existing.label(),
            )
            return False
        del self.peers[node_id]
        existing.close()
        return True

    def peer_ready(self, proto: MemberProtocol) -> None:
        """The handshake is done: count the peer, learn its address, compare stacks."""
        self.peers[proto.peer_node_id] = proto  # type: ignore[index]
        address = proto.listening_address
        if address is not None and proto.peer_port:
            info = self._remember(address)
            if info is not None:
                info.confirmed = True
                info.failures = 0
        self.log.info(
            "Peer {peer} connected ({direction}, height {height}; {n} peers)",
            peer=proto.label(),
            direction="outbound" if proto.outbound else "inbound",
            height=proto.peer_height,
            n=len(self.peers),
        )
        if len(self.peers) < self.target_peers:
            proto.request({"type": "GET_PEERS"}).addErrback(lambda f: None)
        self.maybe_sync()  # on the HELLO's figures at once; STATS confirms them
        self.ask_stats(proto)
        self.send_mempool(proto)

    def send_mempool(self, proto: MemberProtocol) -> None:
        """Pass our pending transactions to a new peer (as TX, best fee first,
        each sender's in nonce order), so that a payment we hold reaches a
        member that restarted without it. Written only as fast as the peer
        reads (``feed``); a transaction it already has is ignored there."""
        pending = self.node.mempool.select(len(self.node.mempool))
        if pending:
            proto.feed(wire.dumps({"type": "TX", "tx": tx}) for tx in pending)

    def is_banned(self, host: str) -> bool:
        until = self.banned.get(host)
        if until is None:
            return False
        if until <= self.clock.seconds():
            del self.banned[host]
            return False
        return True

    def ban(self, proto: MemberProtocol, why: str) -> None:
        """Ban the peer's IP for a while (a loopback peer is only disconnected)."""
        host = proto.peer_host() or "?"
        if is_loopback(host):
            self.log.warn("Closing {peer} for misbehaving: {why}", peer=proto.label(), why=why)
            proto.close()
            # Many members share a loopback address: not banned, but this member
            # (its address) is not redialled for the ban time.
            for address in {proto.dial_address, proto.listening_address} - {None}:
                info = self.known.get(address)  # type: ignore[arg-type]
                if info is not None:
                    info.next_try = max(info.next_try, self.clock.seconds() + self.ban_seconds)
            return
        self.banned[host] = self.clock.seconds() + self.ban_seconds
        self.log.warn("Banning {host} for {secs:.0f} s: {why}", host=host, secs=self.ban_seconds, why=why)
        for other in list(self.connections):
            if other.peer_host() == host:
                other.close()

    # -- addresses and dialing ------------------------------------------------------------

    def _remember(self, address: Address) -> Optional[_AddressInfo]:
        if address in self.self_addresses:
            return None
        info = self.known.get(address)
        if info is None:
            info = self.known[address] = _AddressInfo()
            while len(self.known) > MAX_KNOWN_ADDRESSES:
                oldest = next(a for a in self.known if a not in self.persistent)
                del self.known[oldest]
        return info

    def add_addresses(self, peers: List[Any], source: str) -> int:
        """Learn listening addresses from a PEERS list; invalid entries are skipped."""
        added = 0
        for entry in peers:
            if not isinstance(entry, dict):
                continue
            try:
                address = (wire.get_host(entry, "host"), wire.get_port(entry, "port"))
            except ProtocolError:
                continue
            if address not in self.known and self._remember(address) is not None:  # type: ignore[arg-type]
                added += 1
        if added:
            self.refill()
        return added

    def add_persistent(self, host: str, port: int) -> None:
        """A --connect address: dialled whenever we are not connected to it."""
        self.persistent.add((host, port))
        self._remember((host, port))

    def _connected_addresses(self) -> Set[Address]:
        out = set()
        for p in self.connections:
            for address in (p.dial_address, p.listening_address):
                if address is not None:
                    out.add(address)
        return out

    def _due(self, address: Address, info: _AddressInfo, now: float, busy: Set[Address]) -> bool:
        return (
            address not in busy
            and address not in self.dialing
            and address not in self.self_addresses
            and info.next_try <= now
            and not self.is_banned(address[0])
        )

    def refill(self) -> None:
        """Dial known members until we have (or are dialing) ``target_peers``."""
        now = self.clock.seconds()
        busy = self._connected_addresses()
        for address in sorted(self.persistent):
            if self._due(address, self.known.get(address) or self._remember(address), now, busy):  # type: ignore[arg-type]
                self.dial(address)
        pending = sum(1 for p in self.connections if p.outbound and not p.ready)
        want = self.target_peers - len(self.peers) - pending - len(self.dialing)
        if want <= 0:
            return
        candidates = [a for a, info in self.known.items() if self._due(a, info, now, busy)]
        self.rng.shuffle(candidates)
        for address in candidates[:want]:
            self.dial(address)
        if len(candidates) < want:
            self.ask_for_peers()

    def ask_for_peers(self) -> None:
        """Ask the tracker and our peers for more members (at most every 30 s)."""
        now = self.clock.seconds()
        if now - self._last_peer_request < PING_INTERVAL:
            return
        self._last_peer_request = now
        if self.tracker is not None:
            self.tracker.request_peers()
        for p in list(self.peers.values()):
            p.request({"type": "GET_PEERS"}).addErrback(lambda f: None)

    def dial(self, address: Address) -> None:
        info = self._remember(address)
        if info is None:
            return
        self.dialing.add(address)
        info.next_try = self.clock.seconds() + REQUEST_TIMEOUT
        try:
            d = self.dialer(address[0], address[1], _OutboundFactory(self, address))
        except Exception:
            self.log.failure("Cannot dial {host}:{port}", host=address[0], port=address[1])
            self._dial_failed(address)
            return

        def failed(failure: Failure) -> None:
            self.log.debug("Cannot connect to {host}:{port}: {why}", host=address[0], port=address[1], why=failure.getErrorMessage())
            self._dial_failed(address)

        d.addErrback(failed)

    def _dial_failed(self, address: Address) -> None:
        self.dialing.discard(address)
        info = self.known.get(address)
        if info is not None:
            info.failures += 1
            info.next_try = self.clock.seconds() + min(600.0, 5.0 * 2 ** min(info.failures, 7))
            info.confirmed = False

    def _dial_tcp(self, host: str, port: int, factory: Factory) -> Deferred:
        from twisted.internet.endpoints import HostnameEndpoint

        return HostnameEndpoint(self.reactor, host, port, timeout=10).connect(factory)

    # -- timers ----------------------------------------------------------------------------

    def ping_all(self) -> None:
        """Every 30 s: PING each peer and drop those silent too long."""
        self.drop_silent()
        for p in list(self.peers.values()):
            p.request({"type": "PING"}).addErrback(lambda f: None)

    def drop_silent(self) -> None:
        now = self.clock.seconds()
        for p in list(self.connections):
            if p.ready and now - p.last_seen > SILENCE_TIMEOUT:
                self.log.info("Dropping {peer}: silent for {secs:.0f} s", peer=p.label(), secs=now - p.last_seen)
                p.abort()
            elif not p.ready and now - p.connected_at > HANDSHAKE_TIMEOUT:
                p.abort()

    def tick(self) -> None:
        """Every few seconds: drop silent peers, forget ended bans, dial more when below target."""
        self.drop_silent()
        now = self.clock.seconds()
        for host in [h for h, until in self.banned.items() if until <= now]:
            del self.banned[host]
        self.refill()

    def compare_stacks(self) -> None:
        """Every 60 s: STATS to every peer; sync from one with more work."""
        for p in list(self.peers.values()):
            self.ask_stats(p)

    def ask_stats(self, proto: MemberProtocol) -> Deferred:
        def got(reply: dict) -> None:
            try:
                height = wire.get_int(reply, "height")
                tip = wire.get_smell(reply, "tip")
                work = _get_work(reply)
            except ProtocolError:
                proto.misbehaved(10, "a malformed STATS_REPLY")
                return
            proto.peer_height, proto.peer_tip, proto.peer_work = height, tip, work
            proto.sync_idle_until = 0.0
            self.maybe_sync()

        return proto.request({"type": "STATS"}).addCallbacks(got, lambda f: None)

    # -- syncing ----------------------------------------------------------------------------

    def maybe_sync(self) -> Optional[Download]:
        """Start downloading from the peer with the most work, if it has more than us."""
        if any(p.download is not None for p in self.peers.values()):
            return None
        now = self.clock.seconds()
        ours = self.node.stack.work
        candidates = [
            p for p in self.peers.values() if p.peer_work > ours and p.sync_idle_until <= now and not p.closing
        ]
        if not candidates:
            return None
        best = max(candidates, key=lambda p: p.peer_work)
        return self.start_download(best, "more work")

    def start_download(self, proto: MemberProtocol, reason: str) -> Optional[Download]:
        if proto.download is not None or proto.closing:
            return None
        download = Download(self, proto, reason)
        download.start()
        return download

    def download_finished(self, download: Download) -> None:
        self.maybe_sync()

    def verify_signatures(self, cheeses: List[dict]) -> Deferred:
        """Deferred set of the indices of ``cheeses`` whose transactions are all
        well formed and signed: in the CPU thread pool (one part per core) with
        a real reactor, at once with a fake clock."""
        if not self.verify_in_threads or len(cheeses) < 2:
            return succeed(signed_cheeses(cheeses))
        from .cputhreadpool import defer_to_cpu

        parts = max(1, min(os.cpu_count() or 1, len(cheeses)))
        size = -(-len(cheeses) // parts)
        jobs = [
            defer_to_cpu(signed_cheeses, cheeses[i : i + size], i, reactor=self.reactor)
            for i in range(0, len(cheeses), size)
        ]

        def union(results: List[Set[int]]) -> Set[int]:
            return set().union(*results)

        return gatherResults(jobs, consumeErrors=True).addCallback(union)

    def apply_chunk(
        self, proto: MemberProtocol, cheeses: List[dict], signed: Set[int] = frozenset()
    ) -> Tuple[int, Optional[InvalidCheese]]:
        """Add downloaded cheeses in one batch; (added, the first InvalidCheese or None).
        Signatures are not checked again for the cheeses in ``signed``."""
        added = 0
        with self.relay_batch(proto), self.node.stack.batch():
            for i, cheese in enumerate(cheeses):
                try:
                    result = self.node.submit_cheese(cheese, proto, check_signatures=i not in signed)
                except InvalidCheese as e:
                    return added, e
                if result.status == "added":
                    added += 1
                    self.delivered(proto, len(result.accepted))
        return added, None

    def delivered(self, proto: MemberProtocol, count: int) -> None:
        """``proto`` gave us ``count`` new cheeses: a useful peer, protected from eviction."""
        if count:
            proto.cheeses_delivered += count
            proto.last_cheese_at = self.clock.seconds()

    # -- receiving ------------------------------------------------------------------------

    def receive_cheese(self, proto: MemberProtocol, cheese: dict) -> AddResult:
        """An ANNOUNCE: add it, fetch an orphan's ancestors from the announcer."""
        smell = cheese.get("smell")
        if not (isinstance(smell, str) and smell in self.node.stack):
            self._flush_soon()  # not a cheese we already have
        try:
            result = self.node.submit_cheese(cheese, proto)
        except InvalidCheese as e:
            proto.penalise_next_error(ERROR_POINTS["invalid-cheese"] if e.permanent else 0)
            raise ProtocolError("invalid-cheese", f"rule {e.rule_number} ({e.rule}): {e.message}")
        except StorageError:  # our disk, not the peer's fault (the node reports it, once)
            raise ProtocolError("busy", "this member cannot store cheeses right now")
        if result.status == "orphan":
            self.start_download(proto, "orphan")
        elif result.status == "added":
            self.delivered(proto, len(result.accepted))
        # The peer has this cheese (new to us or not): its stack has at least
        # that much work, which keeps its height current between STATS rounds.
        node = self.node.stack.nodes.get(result.smell)
        if node is not None and node.work > proto.peer_work:
            proto.peer_height, proto.peer_tip, proto.peer_work = node.height, node.smell, node.work
        return result

    def receive_tx(self, proto: MemberProtocol, tx: dict) -> None:
        """A pushed TX: into the mempool (relayed by on_tx), silently if we have it."""
        try:
            self.node.submit_tx(tx, proto)
        except InvalidTx as e:
            if e.rule == "mempool-full":
                raise ProtocolError("busy", "the mempool is full")
            if e.rule in STALE_TX_RULES and check_tx_format(tx) is None:
                if self.node.stack.tx_height(txid(tx)) is not None:
                    return  # already confirmed: we have it
                proto.penalise_next_error(1)
            raise ProtocolError("invalid-tx", f"{e.rule}: {e.message}")

    # -- relaying --------------------------------------------------------------------------

    @contextmanager
    def relay_batch(self, source: Any) -> Iterator[None]:
        """Within it, new best cheeses are collected; at the end only the last
        RELAY_TAIL of them are announced (a sync batch, not thousands)."""
        self._batch_depth += 1
        if self._batch_depth == 1:
            self._batch, self._batch_source = [], source
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                batch, self._batch = self._batch, []
                if batch:
                    stack = self.node.stack
                    on_best = [(h, s) for h, s in batch if stack.is_best(s)]
                    if on_best:
                        self.log.info(
                            "Cheeses {first}..{last} {origin} (tip {tip})",
                            first=on_best[0][0],
                            last=on_best[-1][0],
                            origin=self._origin(source),
                            tip=short(stack.tip.smell),
                        )
                    self.relay(on_best[-RELAY_TAIL:], source)

    def on_tip(self, result: AddResult, source: Any) -> None:
        """Tip listener: log new cheeses and reorganisations, announce to the other peers."""
        stack = self.node.stack
        connected = [(c["sequence_number"], c["smell"]) for c in result.connected]
        if not self._batch_depth:
            self.relay(connected[-RELAY_TAIL:], source)  # first: the log can wait
        if result.disconnected:
            self.log.info(
                "Reorganisation: {n} cheeses abandoned, new tip {height} {tip}",
                n=len(result.disconnected),
                height=stack.height,
                tip=stack.tip.smell,
            )
        if self._batch_depth:
            self._batch.extend(connected)
            return
        origin = self._origin(source)
        if origin == "mined":
            return  # the miner logs its own cheese, with more to say
        if len(connected) > RELAY_TAIL:
            self.log.info("Cheeses {first}..{last} {origin}", first=connected[0][0], last=connected[-1][0], origin=origin)
        else:
            for height, smell in connected:
                self.log.info("Cheese {height} {smell} {origin}", height=height, smell=short(smell), origin=origin)

    @staticmethod
    def _origin(source: Any) -> str:
        if isinstance(source, MemberProtocol):
            return "from " + source.label()
        if isinstance(source, str) and "min" in source:
            return "mined"
        return "from " + str(source) if source is not None else "added"

    def relay(self, cheeses: List[Tuple[int, str]], source: Any) -> int:
        """ANNOUNCE each (height, smell) once to every peer but ``source``; returns how many."""
        stack = self.node.stack
        sent = 0
        for _height, smell in cheeses:
            if smell in self.announced or not stack.is_best(smell):
                continue
            self.announced[smell] = None
            while len(self.announced) > 10000:
                self.announced.popitem(last=False)
            text = stack.get_text(smell)
            if text is None:
                continue
            line = ('{"type":"ANNOUNCE","cheese":' + text + "}\n").encode("utf-8")
            for p in list(self.peers.values()):
                if p is not source and p.peer_tip != smell:
                    p.push_line(line)
            sent += 1
        return sent

    def on_tx(self, tx_id: str, tx: dict, source: Any) -> None:
        """Tx listener: relay a new valid transaction once to every peer but its source."""
        line = wire.dumps({"type": "TX", "tx": tx})
        for p in list(self.peers.values()):
            if p is not source:
                p.push_line(line)

    # -- shutting down ---------------------------------------------------------------------

    def _flush_soon(self) -> None:
        """Open a store batch that is flushed to disk FLUSH_DELAY from now.

        An announced cheese is then committed atomically at once (it survives a
        kill -9) but made durable against power loss a moment later, so that its
        relay to our peers does not wait for an fsync, and announcements that
        arrive together share one.
        """
        if self._lazy_batch is None:
            self._lazy_batch = self.node.stack.batch()
            self._lazy_batch.__enter__()
            self.clock.callLater(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """End the batch opened by _flush_soon (one durable commit)."""
        batch, self._lazy_batch = self._lazy_batch, None
        if batch is not None:
            try:
                batch.__exit__(None, None, None)
            except StorageError as e:
                self.node.storage_failed(e)

    def close_all(self) -> None:
        """Close every connection and flush (the member is stopping)."""
        for p in list(self.connections):
            p.close()
        self.flush()

