# Compact relay: docs/protocol.md section 5.1, feature ``compact``.
#
# Messages it speaks:
#   pushed   {"type":"ANNOUNCE_COMPACT","header":H,"miner":A,"txids":[..],["note"]}
#   request  {"type":"GET_TXS","txids":[..],"smell":S}  -> TXS {"transactions"} (we ask)
#   request  {"type":"GET_CHEESE","smell":S}            -> CHEESE {"cheese"} (we ask)
# (GET_HEADERS and GET_CHEESES by smells, feature ``headers``, are answered by
# cheesecoin.p2p.serving, whose MAX_HEADERS and MAX_SMELLS bound them.)
"""Compact relay of docs/protocol.md section 5.1 (feature ``compact``).

A compact announcement is rebuilt from our mempool; the transactions we lack
come from one GET_TXS (with the cheese's smell) to the announcer, and if it
cannot supply them, or the rebuilt body does not match the header's
``info_hash``, the whole cheese from a GET_CHEESE by smell. The rebuilt
cheese then goes the way of an ANNOUNCE (``Relay.receive_cheese``). While a
cheese is being rebuilt, other announcements of it are ignored.

Early relay: a header is checked against its parent (rules 2 to 4) as soon as
it arrives; once the body is rebuilt and matches its ``info_hash``, a cheese
that would be our new best goes on to our other compact peers at the
reactor's next turn, skipping those whose announcement of it we read
meanwhile (``Relay.relay_early``), and its full validation (ledger,
signatures, the store) runs after those announcements are written (for a
cheese of EARLY_MIN_TXS or more; a smaller one is validated at once).
Peers that take headers (section 5.2) get the cheese's ANNOUNCE_HEADER at
that same moment, and may fetch its COMPACT from us while it is validated.
Because an honest member relays a body it has not validated yet, whole
(ANNOUNCE_COMPACT) or by its header (ANNOUNCE_HEADER, then COMPACT), the
announcer of a compact cheese whose header is valid but whose body breaks a
rule loses RELAYED_INVALID_POINTS, not the invalid-cheese points of a whole
ANNOUNCE (as Bitcoin Core treats a compact block relayed before validation,
BIP 152); the cost of sending one is a proof of work on top of our best stack.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.cheese import (
    MAX_NOTE,
    compact_announcement,
    info_hash,
    rebuild_cheese,
    work_of,
)
from cheesecoin.core.errors import ProtocolError
from cheesecoin.core.formats import ADDRESS_RE
from cheesecoin.core.rules import check_header
from cheesecoin.core.tx import txid
from cheesecoin.p2p.errors import ERROR_POINTS, PeerError, RemoteError, RequestTimeout
from cheesecoin.p2p.fields import get_txids
from cheesecoin.p2p.interfaces import Downloads, PeerNode, RelayView
from cheesecoin.wire import codec as wire

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

MAX_REBUILDING = 64  # compact cheeses being rebuilt at once
MAX_ATTEMPTS = 3  # announcers asked for one cheese at once (BIP 152's 3 in flight)
MAX_PEER_ATTEMPTS = 4  # rebuild attempts under way with one peer
UNDELIVERED_POINTS = 20  # an announcer that does not supply the cheese it announced
RELAYED_INVALID_POINTS = 5  # a header-valid compact cheese whose body breaks a rule
EARLY_MIN_TXS = 50  # transactions that make a cheese's validation worth waiting for its early relay


class CompactRelay:
    """Both sides of compact relay for one member (the headers it serves:
    ``cheesecoin.p2p.serving``)."""

    def __init__(
        self,
        node: PeerNode,
        clock: IReactorTime,
        log: Logger,
        relay: RelayView,
        downloads: Downloads,
    ) -> None:
        self.node = node
        self.clock = clock
        self.log = log
        self.relay = relay
        self.downloads = downloads
        self.rebuilding: "OrderedDict[str, _Rebuild]" = OrderedDict()  # smell -> its rebuild
        # peer -> its rebuild attempts under way
        self.attempts_of: Dict[MemberProtocol, int] = {}
        self.rebuilt = 0  # compact cheeses rebuilt from the mempool alone (tests, figures)
        self.fetched_txs = 0
        self.fell_back = 0  # compact cheeses we had to fetch whole
        self.early_relayed = 0  # compact cheeses relayed on before their full validation

    # -- sending ---------------------------------------------------------------------

    @staticmethod
    def announcement(cheese: dict) -> bytes:
        return wire.dumps(compact_announcement(cheese))

    # -- receiving ---------------------------------------------------------------------

    def announced_header(self, proto: MemberProtocol, header: Any) -> Optional[dict]:
        """The one check of a header a peer announces (ANNOUNCE_COMPACT, ANNOUNCE_HEADER):
        the header if its cheese is worth fetching from ``proto``; None when we have it,
        it is being validated, or it is an orphan (its ancestors then come by a sync from
        the announcer, one download at a time, never by a rebuild of its body)."""
        relay = self.relay
        if relay.already_have(proto, header.get("smell") if isinstance(header, dict) else None):
            return None
        header = check_header(header, self.node.network)
        smell = header["smell"]
        rule = self.node.stack.invalid_rule(smell)
        if rule is not None:
            # another honest early relayer, maybe
            message = f"cheese {smell} is known to be invalid ({rule})"
            raise PeerError("invalid-cheese", message, RELAYED_INVALID_POINTS)
        relay.note_holder(proto, smell)
        if header["parent_smell"] not in self.node.stack.nodes:
            self.downloads.start_download(proto, "orphan")
            return None
        relay.check_header_link(proto, header)  # rules 2 to 4 against its parent
        if smell in relay.pending:
            return None  # rebuilt from another peer's announcement, being validated
        stack = self.node.stack
        if stack.nodes[header["parent_smell"]].work + work_of(header["bits"]) <= stack.tip.work:
            # Not our new best: a side branch comes by a sync once it has more work
            # (as Bitcoin Core rebuilds only compact blocks that extend its tip).
            return None
        return header

    def receive(self, proto: MemberProtocol, msg: dict) -> None:
        """ANNOUNCE_COMPACT (or a COMPACT reply to the GET_COMPACT its announcer's
        ANNOUNCE_HEADER made us send): rebuild the cheese, asking its announcer. A body
        that breaks a rule costs the announcer RELAYED_INVALID_POINTS either way (an
        honest member relays both before validating the body)."""
        header = self.announced_header(proto, msg.get("header"))
        if header is None:
            return
        smell = header["smell"]
        miner = wire.get_str(msg, "miner", 64)
        if not ADDRESS_RE.match(miner):
            raise wire.BadMessage("field 'miner' must be an address (64 lowercase hex characters)")
        txids = get_txids(msg, "txids", max(1, self.node.network.max_transactions), least=0)
        note = wire.get_str(msg, "note", MAX_NOTE) if "note" in msg else None
        job = self.rebuilding.get(smell)
        if job is None:
            if len(self.rebuilding) >= MAX_REBUILDING:
                return  # full: the newcomer waits (evicting would let it drop an honest rebuild)
            job = self.rebuilding[smell] = _Rebuild(header, miner, txids, note)
        if len(job.attempts) < MAX_ATTEMPTS and proto not in job.attempts:
            self._attempt(job, proto)
        self._release(job)  # none under way (this peer at its bound): nothing is kept for it

    def _attempt(self, job: "_Rebuild", proto: MemberProtocol) -> None:
        """Rebuild ``job`` from our mempool and what ``proto``, one of its
        announcers, supplies (at most MAX_PEER_ATTEMPTS at once per peer)."""
        if self.attempts_of.get(proto, 0) >= MAX_PEER_ATTEMPTS:
            return
        txs: List[Optional[dict]] = [self.node.mempool.get(t) for t in job.txids]
        missing = [t for t, tx in zip(job.txids, txs) if tx is None]
        if not missing:
            self.rebuilt += 1
            self._finish(proto, job, txs)
            return
        job.attempts.add(proto)
        self.attempts_of[proto] = self.attempts_of.get(proto, 0) + 1
        d = proto.request({"type": "GET_TXS", "txids": missing[:1000], "smell": job.smell})
        d.addCallbacks(
            self._got_txs,
            self._undelivered,
            callbackArgs=(proto, job, txs),
            errbackArgs=(proto, job),
        )
        d.addErrback(self._attempt_broke, proto, job)

    def _current(self, job: "_Rebuild") -> bool:
        """Whether ``job`` still waits for a body (not done, evicted or replaced)."""
        return self.rebuilding.get(job.smell) is job

    def _release(self, job: "_Rebuild") -> None:
        """Forget ``job`` once no attempt of it is under way (a later announcement
        starts afresh)."""
        if not job.attempts and self._current(job):
            del self.rebuilding[job.smell]

    def _end_attempt(self, proto: MemberProtocol, job: "_Rebuild") -> None:
        job.attempts.discard(proto)
        left = self.attempts_of.get(proto, 0) - 1
        if left > 0:
            self.attempts_of[proto] = left
        else:
            self.attempts_of.pop(proto, None)

    def _got_txs(
        self, reply: dict, proto: MemberProtocol, job: "_Rebuild", txs: List[Optional[dict]]
    ) -> None:
        if not self._current(job):
            self._end_attempt(proto, job)
            return
        got = reply.get("transactions")
        if isinstance(got, list):
            wanted = {t for t, tx in zip(job.txids, txs) if tx is None}
            by_id = {}
            for tx in got[:1000]:
                if isinstance(tx, dict):
                    try:
                        tx_id = txid(tx)
                    except (TypeError, ValueError, KeyError, RecursionError):
                        continue  # not one of those asked for
                    if tx_id in wanted:
                        by_id[tx_id] = tx
            txs = [tx if tx is not None else by_id.get(t) for t, tx in zip(job.txids, txs)]
        if any(tx is None for tx in txs):
            self._whole(proto, job)  # the attempt goes on with the whole cheese
            return
        self._end_attempt(proto, job)
        self.fetched_txs += 1
        self._finish(proto, job, txs)

    def _finish(self, proto: MemberProtocol, job: "_Rebuild", txs: List[Any]) -> None:
        header = job.header
        cheese = rebuild_cheese(header, job.miner, list(txs), job.note)
        if info_hash(cheese["unit_of_information"]) != header["info_hash"]:
            # Our transactions are not the ones it was built with: the whole cheese.
            job.attempts.add(proto)
            self.attempts_of[proto] = self.attempts_of.get(proto, 0) + 1
            self._whole(proto, job)
            return
        self.rebuilding.pop(job.smell, None)
        line = wire.dumps(compact_announcement(cheese, header["info_hash"], job.txids))
        if self.relay.relay_early(proto, cheese, line):
            self.early_relayed += 1
            if len(txs) >= EARLY_MIN_TXS:
                # A transport writes when the reactor next polls, and a delayed call
                # made now runs before that poll: the second hop runs after it.
                clock = self.clock
                clock.callLater(
                    0,
                    clock.callLater,
                    0,
                    self._receive,
                    proto,
                    cheese,
                    RELAYED_INVALID_POINTS,
                    header["info_hash"],
                )
                return
        self._receive(proto, cheese, RELAYED_INVALID_POINTS, header["info_hash"])

    def _whole(self, proto: MemberProtocol, job: "_Rebuild") -> None:
        """Fall back to the whole cheese, by smell, from the announcer (the attempt goes on)."""
        self.fell_back += 1
        d = proto.request({"type": "GET_CHEESE", "smell": job.smell})
        d.addCallbacks(
            self._got_whole, self._undelivered, callbackArgs=(proto, job), errbackArgs=(proto, job)
        )
        d.addErrback(self._attempt_broke, proto, job)

    def _got_whole(self, reply: dict, proto: MemberProtocol, job: "_Rebuild") -> None:
        self._end_attempt(proto, job)
        cheese = reply.get("cheese")
        if not isinstance(cheese, dict) or cheese.get("smell") != job.smell:
            proto.misbehaved(UNDELIVERED_POINTS, "a CHEESE that is not the one asked for")
            self._release(job)
            return
        if self._current(job):
            self.rebuilding.pop(job.smell, None)
            self._receive(proto, cheese)

    def _undelivered(self, failure: Failure, proto: MemberProtocol, job: "_Rebuild") -> None:
        """The announcer did not supply the cheese it announced (no reply in time,
        or ERROR): it loses points; other announcers' attempts go on. A lost
        connection costs nothing."""
        self._end_attempt(proto, job)
        if failure.check(RequestTimeout, RemoteError) and not proto.closing:
            proto.misbehaved(
                UNDELIVERED_POINTS, f"did not deliver the cheese {job.smell} it announced"
            )
        self._release(job)

    def _attempt_broke(self, failure: Failure, proto: MemberProtocol, job: "_Rebuild") -> None:
        """A reply that broke its handler: the attempt ends and ``proto`` is charged (one line)."""
        self._end_attempt(proto, job)
        self.log.warn(
            "Compact cheese {smell} from {peer}: {error}",
            smell=job.smell[:12],
            peer=proto.label(),
            error=f"{failure.type.__name__}: {failure.getErrorMessage()}"[:200],
        )
        proto.misbehaved(ERROR_POINTS["bad-message"], "a reply that broke a compact rebuild")
        self._release(job)

    def _receive(
        self,
        proto: MemberProtocol,
        cheese: dict,
        invalid_points: Optional[int] = None,
        ihash: Optional[str] = None,
    ) -> None:
        """Validate and add a rebuilt (or whole) cheese; an invalid one costs its sender
        points. ``ihash``: its body's info_hash, already checked."""
        relay = self.relay
        try:
            relay.receive_cheese(proto, cheese, invalid_points, ihash)
        except ProtocolError as e:
            if not proto.closing:
                proto.refuse(e)
        finally:
            relay.pending.pop(cheese["smell"], None)


class _Rebuild:
    """One compact cheese being rebuilt: its announcement, and the announcers
    asked for its missing transactions (or the whole cheese) right now."""

    __slots__ = ("header", "smell", "miner", "txids", "note", "attempts")

    def __init__(self, header: dict, miner: str, txids: List[str], note: Optional[str]) -> None:
        self.header, self.smell, self.miner = header, header["smell"], miner
        self.txids, self.note = txids, note
        self.attempts: Set[MemberProtocol] = set()
