# Relay of pushed cheeses and transactions: docs/protocol.md sections 5, 5.1, 5.2.
#
# Messages it speaks:
#   received {"type":"ANNOUNCE","cheese":C}   a new cheese (ERROR invalid-cheese if invalid)
#   received {"type":"TX","tx":T}             a new transaction (ERROR invalid-tx, busy)
#   pushed   ANNOUNCE, ANNOUNCE_COMPACT (feature compact, cheesecoin.p2p.compact),
#            ANNOUNCE_HEADER (compact-modes), TX, and txids for INV (inv)
"""Receiving pushed cheeses and transactions, and relaying them on."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from cheesecoin.core.cheese import check_member_info, work_of
from cheesecoin.core.errors import InvalidCheese, InvalidTx, ProtocolError, StorageError
from cheesecoin.core.interfaces import Source
from cheesecoin.core.node import MINED
from cheesecoin.core.stack import StoreBatch
from cheesecoin.core.tree import AddResult
from cheesecoin.p2p.errors import ERROR_POINTS, PeerError
from cheesecoin.p2p.features import COMPACT, INV
from cheesecoin.p2p.interfaces import (
    CompactView,
    Downloads,
    HeaderModes,
    MempoolView,
    PeerDirectory,
    PeerNode,
    TxAnnouncer,
)
from cheesecoin.p2p.mempool_sync import STALE_TX_POINTS, classify_refusal
from cheesecoin.p2p.protocol import MemberProtocol, short
from cheesecoin.p2p.sync import RELAY_TAIL
from cheesecoin.wire import codec as wire

FLUSH_DELAY = 0.05  # seconds between accepting an announced cheese and the fsync
MAX_HOLDERS = 64  # recent cheeses whose announcers we remember
REFUSED_KEPT = 8  # cheeses relayed before validation and refused, still answered for
REFUSED_SECONDS = 60.0  # how long one is (the peers we sent it ask it of us meanwhile)


class Relay:
    """What comes in pushed (ANNOUNCE, TX) and what we push on: new best
    cheeses announced once to every peer but their source (after a sync, only
    the last ``RELAY_TAIL``), new transactions relayed once, our mempool
    handed to each new peer; announced cheeses flushed to disk together.

    Built before the parts that rebuild and announce in other forms, which
    ``attach`` then connects (they need the relay too)."""

    compact: CompactView  # section 5.1: ANNOUNCE_COMPACT lines
    modes: HeaderModes  # section 5.2: ANNOUNCE_HEADER to peers that want headers
    inventory: TxAnnouncer  # section 5.2: INV
    mempool: MempoolView  # section 5.1: the mempool exchange

    def __init__(
        self,
        node: PeerNode,
        clock: IReactorTime,
        log: Logger,
        directory: PeerDirectory,
        downloads: Downloads,
    ) -> None:
        self.node = node
        self.clock = clock
        self.log = log
        self.directory = directory
        self.downloads = downloads
        self.announced: "OrderedDict[str, None]" = OrderedDict()
        # sent to compact peers before validation
        self.early: "OrderedDict[str, None]" = OrderedDict()
        # recent smells: the peers that announced them
        self.holders: "OrderedDict[str, Set[MemberProtocol]]" = OrderedDict()
        # those cheeses while their validation waits (GET_TXS answers)
        self.pending: Dict[str, dict] = {}
        # those of them refused by their validation, recent ones (``relayed``)
        self.refused: "OrderedDict[str, dict]" = OrderedDict()
        self._batch_depth = 0
        self._batch: List[Tuple[int, str]] = []  # (height, smell) connected during a batch
        self._batch_source: Source = None
        self._lazy_batch: Optional[StoreBatch] = None  # the batch an announced cheese opened
        self.node.tip_listeners.append(self.on_tip)
        self.node.tx_listeners.append(self.on_tx)

    def attach(
        self,
        compact: CompactView,
        modes: HeaderModes,
        inventory: TxAnnouncer,
        mempool: MempoolView,
    ) -> None:
        """Connect the parts built after the relay (each needs it)."""
        self.compact, self.modes, self.inventory, self.mempool = compact, modes, inventory, mempool

    # -- receiving ------------------------------------------------------------------------

    def receive_cheese(
        self,
        proto: MemberProtocol,
        cheese: dict,
        invalid_points: Optional[int] = None,
        ihash: Optional[str] = None,
    ) -> AddResult:
        """An ANNOUNCE: add it, fetch an orphan's ancestors from the announcer.

        An invalid cheese costs the peer the invalid-cheese points, or
        ``invalid_points`` (a compact cheese that may have been relayed on
        before validation)."""
        smell = cheese.get("smell")
        if isinstance(smell, str) and self.already_have(proto, smell):
            return AddResult("duplicate", smell)
        self._flush_soon()  # not a cheese we already have
        try:
            result = self.node.submit_cheese(cheese, proto, ihash=ihash)
        except InvalidCheese as e:
            if isinstance(smell, str) and smell in self.pending:
                self._keep_refused(smell, cheese)
            raise self._refused(proto, e, invalid_points)
        except StorageError:  # our disk, not the peer's fault (the node reports it, once)
            raise ProtocolError("busy", "this member cannot store cheeses right now")
        if result.status == "orphan":
            self.downloads.start_download(proto, "orphan")
        elif result.status == "added":
            self.directory.delivered(proto, len(result.accepted))
        # The peer has this cheese (new to us or not): its stack has at least
        # that much work, which keeps its height current between STATS rounds.
        node = self.node.stack.nodes.get(result.smell)
        if node is not None:
            proto.holds(node.height, node.smell, node.work)
        return result

    def already_have(self, proto: MemberProtocol, smell: Any) -> bool:
        """Whether ``smell`` is a (valid) cheese we have. Such an announcement is
        ignored silently (docs/protocol.md section 5): not checked again, not
        relayed; every peer but the first to announce a cheese sends one. The
        peer has it, so its stack has at least that much work."""
        known = self.node.stack.nodes.get(smell) if isinstance(smell, str) else None
        if known is None or known.invalid:
            return False
        holders = self.holders.get(smell)
        if holders is not None:
            holders.add(proto)
        proto.holds(known.height, known.smell, known.work)
        return True

    def check_header_link(self, proto: MemberProtocol, header: dict) -> None:
        """Rules 2 to 4 of a compact header against its parent, when we hold it
        (an orphan's header is checked with its body, once its ancestors come)."""
        stack = self.node.stack
        parent = stack.nodes.get(header["parent_smell"])
        if parent is None:
            return
        try:
            stack.check_link(header, parent)
        except InvalidCheese as e:
            raise self._refused(proto, e)

    @staticmethod
    def _refused(
        proto: MemberProtocol, e: InvalidCheese, points: Optional[int] = None
    ) -> PeerError:
        """The invalid-cheese ERROR for ``e``; it costs the peer ``points`` (the
        invalid-cheese points by default), nothing if the fault may pass."""
        if points is None:
            points = ERROR_POINTS["invalid-cheese"]
        message = f"rule {e.rule_number} ({e.rule}): {e.message}"
        return PeerError("invalid-cheese", message, points if e.permanent else 0)

    def relay_early(self, source: MemberProtocol, cheese: dict, line: bytes) -> bool:
        """Send a rebuilt compact cheese on to our other compact peers before
        its full validation, if it would be our new best (its header is
        checked): ``line`` (its ANNOUNCE_COMPACT) to those that take it whole,
        its ANNOUNCE_HEADER to those that take headers (section 5.2). The lines
        are pushed by a call at the reactor's next turn, which comes before its
        next poll writes them: by then the other announcements of this cheese
        read in the same poll have named peers that have it (``note_holder``),
        and they are skipped. Returns whether it is to be sent: its validation
        may then wait until it is written."""
        stack = self.node.stack
        smell = cheese["smell"]
        parent = stack.nodes.get(cheese["parent_smell"])
        if (
            COMPACT not in self.directory.features
            or parent is None
            or parent.invalid
            or smell in self.early
            or smell in stack.nodes
            or smell in stack.invalid
            or parent.work + work_of(cheese["bits"]) <= stack.tip.work
        ):
            return False
        self.note_holder(source, smell)
        if next(self._early_peers(smell), None) is None:
            return False
        try:
            check_member_info(cheese["unit_of_information"], self.node.network.max_transactions)
        except InvalidCheese:
            return False  # refused by the validation that follows
        self.early[smell] = None
        while len(self.early) > 10000:
            self.early.popitem(last=False)
        self.clock.callLater(0, self._push_early, cheese, line)
        self.pending[smell] = cheese
        return True

    def relayed(self, smell: str) -> Optional[dict]:
        """A cheese we sent on before its validation (GET_COMPACT and GET_TXS answers):
        one being validated, or one refused in the last REFUSED_SECONDS (the last
        REFUSED_KEPT), so that the peers we announced it to can fetch it, find it
        invalid and charge us RELAYED_INVALID_POINTS, not an undelivered cheese's."""
        cheese = self.pending.get(smell)
        return cheese if cheese is not None else self.refused.get(smell)

    def _keep_refused(self, smell: str, cheese: dict) -> None:
        self.refused[smell] = cheese
        while len(self.refused) > REFUSED_KEPT:
            self.refused.popitem(last=False)
        self.clock.callLater(REFUSED_SECONDS, self.refused.pop, smell, None)

    def note_holder(self, proto: MemberProtocol, smell: str) -> None:
        """``proto`` announced ``smell`` to us: it is not sent it back."""
        holders = self.holders.get(smell)
        if holders is None:
            holders = self.holders[smell] = set()
            while len(self.holders) > MAX_HOLDERS:
                self.holders.popitem(last=False)
        holders.add(proto)

    def peer_gone(self, proto: MemberProtocol) -> None:
        """A closed connection is no longer named as a holder of recent cheeses."""
        for holders in self.holders.values():
            holders.discard(proto)

    def _early_peers(self, smell: str) -> Iterator[Tuple[MemberProtocol, bool]]:
        """The peers to send ``smell`` before its validation, all but those that
        announced it or hold it, in turn: (peer, whether it takes headers) for the
        compact peers that take it whole or take headers (a generator: whether there
        is one at all costs one peer's look)."""
        holders = self.holders.get(smell, ())
        modes = self.modes
        for p in self.directory.peers.values():
            if p in holders or p.peer_tip == smell or p.closing:
                continue
            if modes.wants_header(p):
                yield p, True
            elif COMPACT in p.peer_features:
                yield p, False

    def _early_targets(self, smell: str) -> Tuple[List[MemberProtocol], List[MemberProtocol]]:
        """``_early_peers`` split: (those that take it whole, those that take headers)."""
        whole: List[MemberProtocol] = []
        headers: List[MemberProtocol] = []
        for p, header in self._early_peers(smell):
            (headers if header else whole).append(p)
        return whole, headers

    def _push_early(self, cheese: dict, line: bytes) -> None:
        smell = cheese["smell"]
        if smell in self.node.stack.invalid:
            return  # a small cheese, validated (and refused) before its turn came
        whole, headers = self._early_targets(smell)
        for p in whole:
            p.push_line(line)
        if headers:
            header_line = self.modes.header_line(cheese)
            for p in headers:
                p.push_line(header_line)

    def receive_tx(self, proto: MemberProtocol, tx: dict) -> None:
        """A pushed TX: into the mempool (relayed by on_tx), silently if we have it."""
        try:
            self.node.submit_tx(tx, proto)
        except InvalidTx as e:
            why = classify_refusal(self.node, tx, e)
            if why == "full":
                raise ProtocolError("busy", "the mempool is full")
            if why == "have":
                return  # already confirmed: we have it
            if why == "stale":
                raise PeerError("invalid-tx", f"{e.rule}: {e.message}", STALE_TX_POINTS)
            raise ProtocolError("invalid-tx", f"{e.rule}: {e.message}")

    # -- relaying --------------------------------------------------------------------------

    def send_mempool(self, proto: MemberProtocol) -> None:
        """Pass our pending transactions to a new peer (as TX, best fee first,
        each sender's in nonce order), so that a payment we hold reaches a
        member that restarted without it. Written only as fast as the peer
        reads (``feed``); a transaction it already has is ignored there."""
        pending = self.node.mempool.select(len(self.node.mempool))
        if pending:
            proto.feed(wire.dumps({"type": "TX", "tx": tx}) for tx in pending)

    @contextmanager
    def relay_batch(self, source: Source) -> Iterator[None]:
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

    def on_tip(self, result: AddResult, source: Source) -> None:
        """Tip listener: log new cheeses and reorganisations, announce to the other peers."""
        stack = self.node.stack
        connected = [(c["sequence_number"], c["smell"]) for c in result.connected]
        if connected and isinstance(source, MemberProtocol):
            self.modes.brought_first(source)  # the first to bring us a new best cheese
        if not self._batch_depth:
            self.relay(connected[-RELAY_TAIL:], source)  # first: the log can wait
        self.mempool.on_tip()  # a peer we could not exchange with yet, maybe now
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
            self.log.info(
                "Cheeses {first}..{last} {origin}",
                first=connected[0][0],
                last=connected[-1][0],
                origin=origin,
            )
        else:
            for height, smell in connected:
                self.log.info(
                    "Cheese {height} {smell} {origin}",
                    height=height,
                    smell=short(smell),
                    origin=origin,
                )

    @staticmethod
    def _origin(source: Source) -> str:
        if isinstance(source, MemberProtocol):
            return "from " + source.label()
        if source == MINED:
            return "mined"
        return "from " + str(source) if source is not None else "added"

    def relay(self, cheeses: List[Tuple[int, str]], source: Source) -> int:
        """ANNOUNCE each (height, smell) once to every peer but ``source``; returns how many."""
        stack = self.node.stack
        sent = 0
        for _height, smell in cheeses:
            if smell in self.announced or not stack.is_best(smell):
                continue
            self.announced[smell] = None
            while len(self.announced) > 10000:
                self.announced.popitem(last=False)
            cheese = stack.get_cheese(smell)
            if cheese is None:
                continue
            line = compact_line = header_line = None  # each built when a peer needs it
            use_compact = COMPACT in self.directory.features
            holders = self.holders.get(smell, ())
            modes = self.modes
            for p in list(self.directory.peers.values()):
                if p is not source and p.peer_tip != smell and p not in holders:
                    if modes.wants_header(p):  # section 5.2: the header alone
                        if smell in self.early:
                            continue  # sent before its validation (relay_early)
                        if header_line is None:
                            header_line = modes.header_line(cheese)
                        p.push_line(header_line)
                    elif use_compact and COMPACT in p.peer_features:  # 5.1: header and txids
                        if smell in self.early:
                            continue  # sent before its validation (relay_early)
                        if compact_line is None:
                            compact_line = self.compact.announcement(cheese)
                        p.push_line(compact_line)
                    else:
                        if line is None:
                            text = stack.serving.get_text(smell)
                            assert text is not None  # get_cheese found it
                            line = ('{"type":"ANNOUNCE","cheese":' + text + "}\n").encode("utf-8")
                        p.push_line(line)
            sent += 1
        return sent

    def on_tx(self, tx_id: str, tx: dict, source: Source) -> None:
        """Tx listener: a new valid transaction once to every peer but its source:
        by txid (INV, gathered) to ``inv`` peers, whole (TX) to the others."""
        line = None
        by_inv = []
        use_inv = INV in self.directory.features
        for p in list(self.directory.peers.values()):
            if p is source:
                continue
            if use_inv and INV in p.peer_features:
                by_inv.append(p)
                continue
            if line is None:
                line = wire.dumps({"type": "TX", "tx": tx})
            p.push_line(line)
        if use_inv:
            sender = source if isinstance(source, MemberProtocol) else None
            self.inventory.announce(tx_id, by_inv, sender)

    # -- the disk ----------------------------------------------------------------------------

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
