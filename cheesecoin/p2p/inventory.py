# Transactions by inventory: docs/protocol.md section 5.2, feature ``inv``.
#
# Messages it speaks:
#   pushed   {"type":"INV","txids":[TXID,...]}       1 to 1000 txids we hold in our mempool
#   request  {"type":"GET_TXS","txids":[TXID,...]}  -> TXS {"transactions"} (answered by
#                                                      MempoolExchange.find_txs, section 5.1)
"""Relay of transactions by txid (``INV``), fetched once with ``GET_TXS``.

Sending: a new valid mempool transaction goes to each ``inv`` peer as a
txid in an ``INV``, gathered for at most ``INV_DELAY`` (section 5.2 allows
1 s), never to a peer that announced or sent it to us, never twice to a peer;
a peer without ``inv`` still gets the whole ``TX`` (``Relay.on_tx``).

Receiving: the txids of an ``INV`` we lack (not in the mempool, not
confirmed, not refused lately) are asked of one announcer at a time with
``GET_TXS``; a txid that announcer does not deliver within ``FETCH_TIMEOUT``
is asked of the next one that announced it. What arrives is handled as a
``TX`` (``MempoolExchange.take_tx``: an invalid transaction costs the same
points whichever message brought it).

Bounds (a peer is hostile): at most ``MAX_PEER_IN_FLIGHT`` txids asked of one
peer at a time and ``MAX_IN_FLIGHT`` in all; ``MAX_ANNOUNCERS`` announcers
remembered per txid, ``MAX_PEER_TRACKED`` txids remembered for one peer (its
oldest forgotten first: a long run's honest announcer is still heard) and
``MAX_TRACKED`` txids tracked at all (the oldest forgotten); an ``INV``
costs a set look-up per txid, and a txid we ask for and never get costs
its announcer its in-flight slot until the timeout.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.tx import txid as txid_of
from cheesecoin.p2p.errors import ERROR_POINTS
from cheesecoin.p2p.features import INV
from cheesecoin.p2p.fields import get_txids
from cheesecoin.p2p.interfaces import MempoolView, PeerDirectory, PeerNode
from cheesecoin.p2p.mempool_sync import TXS_PER_REQUEST

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

MAX_INV = 1000  # txids in one INV (section 5.2)
INV_DELAY = 0.2  # seconds txids are gathered before an INV goes out (section 5.2: at most 1 s)
FETCH_TIMEOUT = 5.0  # seconds an announcer has to deliver before the next one is asked
MAX_PEER_IN_FLIGHT = 2000  # txids asked of one peer at a time
MAX_IN_FLIGHT = 20000  # txids asked of all peers at a time
MAX_ANNOUNCERS = 8  # announcers remembered per txid (the fallbacks)
MAX_TRACKED = 40000  # txids whose announcers and holders are remembered (twice MAX_IN_FLIGHT)
MAX_PEER_TRACKED = 5000  # txids remembered as announced by one peer (its oldest forgotten)
REFUSED_MEMORY = 5000  # txids refused lately, not asked for again


class Inventory:
    """Both sides of ``inv`` for one member."""

    def __init__(
        self,
        node: PeerNode,
        clock: IReactorTime,
        log: Logger,
        directory: PeerDirectory,
        mempool: MempoolView,
    ) -> None:
        self.node = node
        self.clock = clock
        self.log = log
        self.directory = directory
        self.mempool = mempool
        # txid -> the peers that announced or sent it to us (in order), recent ones only.
        self.peers_of: "OrderedDict[str, List[MemberProtocol]]" = OrderedDict()
        self.in_flight: Dict[str, MemberProtocol] = {}  # txid -> the peer it is asked of
        # peer -> the txids it is remembered for, oldest first (a dict used as an ordered set)
        self.tracked_by: Dict[MemberProtocol, Dict[str, None]] = {}
        # peer -> txids asked of it and not yet delivered
        self.asked_of: Dict[MemberProtocol, Set[str]] = {}
        self.refused: "OrderedDict[str, None]" = OrderedDict()
        # peer -> txids to announce at the next flush
        self.outbox: Dict[MemberProtocol, List[str]] = {}
        self._flush_call: Optional[IDelayedCall] = None
        self.fetched = 0  # transactions new to us that an INV brought (tests, figures)

    # -- sending ------------------------------------------------------------------------

    def announce(
        self, tx_id: str, peers: List[MemberProtocol], source: Optional[MemberProtocol] = None
    ) -> None:
        """Queue ``tx_id`` for the ``inv`` peers among ``peers`` that do not hold it
        (``source``, a peer that sent it to us, holds it)."""
        known = self._entry(tx_id)
        if source is not None:
            self._note(known, tx_id, source)
        outbox = self.outbox
        for p in peers:  # (distinct peers: one noted here is never met again)
            if p in known:
                continue
            box = outbox.get(p)
            if box is None:
                box = outbox[p] = []
            box.append(tx_id)
            if len(box) >= MAX_INV:
                self._send(p)
            self._note(known, tx_id, p)  # announced to it: not again
        if outbox and self._flush_call is None:
            self._flush_call = self.clock.callLater(INV_DELAY, self.flush)

    def flush(self) -> None:
        """Send every peer's gathered txids (one INV each)."""
        self._flush_call = None
        for p in list(self.outbox):
            self._send(p)

    def _send(self, proto: MemberProtocol) -> None:
        txids = self.outbox.pop(proto, None)
        if txids and not proto.closing:
            proto.push({"type": "INV", "txids": txids})

    def _entry(self, tx_id: str) -> List[MemberProtocol]:
        """The peers remembered as holding ``tx_id`` (a new, empty entry if none)."""
        known = self.peers_of.get(tx_id)
        if known is None:
            known = self.peers_of[tx_id] = []
            if len(self.peers_of) > MAX_TRACKED:
                self._evict()
        return known

    def _note(self, known: List[MemberProtocol], tx_id: str, peer: MemberProtocol) -> None:
        """``peer`` holds ``tx_id`` (it sent or announced it, or was told of it);
        ``known`` is ``tx_id``'s entry. A peer remembered for ``MAX_PEER_TRACKED``
        txids forgets its oldest one for it: an ``INV`` flood costs its sender its
        own entries, never another peer's, and a peer that has announced many
        transactions over a long run is still heard."""
        if len(known) >= MAX_ANNOUNCERS or peer in known:
            return
        known.append(peer)
        tracked = self.tracked_by.get(peer)
        if tracked is None:
            tracked = self.tracked_by[peer] = {}
        tracked[tx_id] = None
        if len(tracked) > MAX_PEER_TRACKED:
            self._forget_oldest(peer, tracked)

    def _forget_oldest(self, peer: MemberProtocol, tracked: Dict[str, None]) -> None:
        """``peer`` is no longer remembered for its oldest txid; an entry it alone held
        goes too (left empty, the txids of a flood would fill ``MAX_TRACKED`` and
        evict the entries of other peers)."""
        oldest = next(iter(tracked))
        del tracked[oldest]
        holders = self.peers_of.get(oldest)
        if holders is not None and peer in holders:
            holders.remove(peer)
            if not holders:
                del self.peers_of[oldest]

    def _evict(self) -> None:
        """Forget the oldest tracked txids beyond MAX_TRACKED, never one being fetched
        (its fallback announcers are what a front-running liar would have us lose)."""
        skipped = 0
        while len(self.peers_of) > MAX_TRACKED and skipped < len(self.peers_of):
            old, holders = self.peers_of.popitem(last=False)
            if old in self.in_flight:
                self.peers_of[old] = holders  # to the back: it is still wanted
                skipped += 1
                continue
            for p in holders:
                tracked = self.tracked_by.get(p)
                if tracked is not None:
                    tracked.pop(old, None)

    # -- receiving ------------------------------------------------------------------------

    def receive(self, proto: MemberProtocol, msg: dict) -> None:
        """An INV: note the announcer of each txid, ask for those we lack."""
        txids = get_txids(msg, "txids", MAX_INV)
        mempool, stack = self.node.mempool, self.node.stack
        in_flight, refused = self.in_flight, self.refused
        entry, note = self._entry, self._note
        want: List[str] = []
        for tx_id in dict.fromkeys(txids):
            note(entry(tx_id), tx_id, proto)
            if tx_id in in_flight or tx_id in mempool or tx_id in refused:
                continue
            if stack.tx_height(tx_id) is not None:
                continue
            want.append(tx_id)
        self._ask(proto, want)

    def _ask(self, proto: MemberProtocol, txids: List[str]) -> None:
        """One GET_TXS to ``proto`` for ``txids`` (as many as its and our bounds allow)."""
        if proto.closing:
            return
        asked = self.asked_of.setdefault(proto, set())
        room = min(
            MAX_PEER_IN_FLIGHT - len(asked), MAX_IN_FLIGHT - len(self.in_flight), TXS_PER_REQUEST
        )
        chunk = txids[: max(0, room)]
        if not chunk:
            if not asked:
                self.asked_of.pop(proto, None)
            return
        for tx_id in chunk:
            self.in_flight[tx_id] = proto
            asked.add(tx_id)
        d = proto.request({"type": "GET_TXS", "txids": chunk}, timeout=FETCH_TIMEOUT)
        d.addCallbacks(
            self._got, self._failed, callbackArgs=(proto, chunk), errbackArgs=(proto, chunk)
        )
        d.addErrback(self._broke, proto, chunk)

    def _got(self, reply: dict, proto: MemberProtocol, chunk: List[str]) -> None:
        txs = reply.get("transactions")
        if not isinstance(txs, list) or len(txs) > len(chunk):
            proto.misbehaved(ERROR_POINTS["bad-message"], "a malformed TXS")
            txs = []
        wanted = set(chunk)
        take = self.mempool.take_tx
        for tx in txs:
            if proto.closing:
                break
            tx_id = _txid_or_none(tx)
            if tx_id is None or tx_id not in wanted:
                continue
            wanted.discard(tx_id)
            self._land(tx_id, proto)
            if take(proto, tx) is not None:
                self._refuse(tx_id)
            else:
                self.fetched += 1
        self._next_announcer(proto, [t for t in chunk if t in wanted])

    def _failed(self, failure: Failure, proto: MemberProtocol, chunk: List[str]) -> None:
        """No reply in time, an ERROR, or the connection went: the next announcers."""
        self._next_announcer(proto, chunk)

    def _broke(self, failure: Failure, proto: MemberProtocol, chunk: List[str]) -> None:
        """A reply that broke its handler: one log line, its sender charged, the txids freed."""
        self.log.warn(
            "A TXS from {peer} broke its handler: {error}",
            peer=proto.label(),
            error=f"{failure.type.__name__}: {failure.getErrorMessage()}"[:200],
        )
        proto.misbehaved(ERROR_POINTS["bad-message"], "a TXS that broke its handler")
        for tx_id in chunk:
            self._land(tx_id, proto)

    def _land(self, tx_id: str, proto: MemberProtocol) -> None:
        """``tx_id`` is no longer asked of ``proto``."""
        if self.in_flight.get(tx_id) is proto:
            del self.in_flight[tx_id]
        asked = self.asked_of.get(proto)
        if asked is not None:
            asked.discard(tx_id)
            if not asked:
                del self.asked_of[proto]

    def _next_announcer(self, proto: MemberProtocol, missing: List[str]) -> None:
        """Ask each txid ``proto`` did not deliver of the next peer that announced it."""
        by_peer: Dict[MemberProtocol, List[str]] = {}
        mempool = self.node.mempool
        for tx_id in missing:
            self._land(tx_id, proto)
            if tx_id in mempool or tx_id in self.refused:
                continue
            announcers = self.peers_of.get(tx_id, [])
            if proto in announcers:
                announcers.remove(proto)  # it does not have it (any more)
                tracked = self.tracked_by.get(proto)
                if tracked is not None:
                    tracked.pop(tx_id, None)
            here = self.directory.peers.values()
            nxt = next((p for p in announcers if not p.closing and p in here), None)
            if nxt is not None:
                by_peer.setdefault(nxt, []).append(tx_id)
        for peer, txids in by_peer.items():
            self._ask(peer, txids)

    def _refuse(self, tx_id: str) -> None:
        self.refused[tx_id] = None
        while len(self.refused) > REFUSED_MEMORY:
            self.refused.popitem(last=False)

    def peer_gone(self, proto: MemberProtocol) -> None:
        """A closed connection: its queued INV is dropped and it is named nowhere as a
        holder or announcer (its requests fail by themselves and go to the next one)."""
        self.outbox.pop(proto, None)
        for tx_id in self.tracked_by.pop(proto, ()):
            holders = self.peers_of.get(tx_id)
            if holders is not None and proto in holders:
                holders.remove(proto)


def _txid_or_none(tx: Any) -> Optional[str]:
    if not isinstance(tx, dict):
        return None
    try:
        return txid_of(tx)
    except (TypeError, ValueError, KeyError, RecursionError):
        return None


__all__ = ["Inventory", "INV", "MAX_INV"]
