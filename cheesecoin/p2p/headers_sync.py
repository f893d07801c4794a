# Headers-first sync: docs/protocol.md section 5.1, feature ``headers``.
#
# Messages it speaks (we ask):
#   request  {"type":"GET_HEADERS","locator":[S..],"count":K}  -> HEADERS {"headers"}
#   request  {"type":"GET_CHEESES","smells":[S..]}             -> CHEESES {"cheeses"}
"""Headers-first sync, bodies from several peers (docs/protocol.md section 5.1).

Messages (feature ``headers``): GET_HEADERS {"locator", "count"} -> HEADERS
{"headers"}; GET_CHEESES {"smells"} -> CHEESES.

A ``HeadersDownload`` asks the peer with the most work for its headers
(2,000 a request) and checks them (``core.headers.HeaderChain``: links,
bits, timestamps, proof of work) and their total work before it asks for
any body: a peer whose headers are invalid, or do not reach the work it
claimed, is dropped with no body downloaded. Then the bodies come by smell
in windows of ``WINDOW`` from every peer that has shown it holds that stack
(the headers peer, and ``headers`` peers whose tip is one of the checked
headers at or after the window's end: a claim of work alone gets no window),
``PER_PEER`` windows in flight each; a window goes to another peer when one
refuses (sends fewer) or sends a body that does not match its header (that
peer loses points); a peer that lets a window time out (``WINDOW_TIMEOUT``)
gets no more windows of this download.

Nothing a peer sends can leave a download running: a headers peer that does
not answer ``GET_HEADERS`` within ``HEADERS_TIMEOUT`` ends the download (it
claimed work it did not show: its host then rests and ranks after the others,
``Sync._failed_claim``), every reply handler has an errback that ends
the download and charges the peer whose reply broke it, and ``Sync.watchdog``
ends a download that made no progress for ``STALL_SECONDS``. Bodies are applied in
order; each reply's signatures, and each body's info_hash against its
header, are checked as soon as it arrives (``Sync.verify_signatures``, in
worker processes on a real reactor, ``core.headers.checked_bodies``); at
most ``MAX_AHEAD`` windows are held or asked for beyond the next to apply.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Set, Tuple

from twisted.python.failure import Failure

from cheesecoin.core.errors import InvalidCheese, ProtocolError, StorageError
from cheesecoin.core.headers import HeaderChain, matches_fields
from cheesecoin.core.rules import check_header
from cheesecoin.p2p.download import BaseDownload
from cheesecoin.p2p.errors import BAN_SCORE, ERROR_POINTS, RequestTimeout
from cheesecoin.p2p.features import HEADERS
from cheesecoin.p2p.interfaces import DownloadContext
from cheesecoin.p2p.serving import MAX_HEADERS

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

WINDOW = 50  # smells per GET_CHEESES
APPLY_BATCH = 500  # bodies applied in one store transaction (fewer if nothing more is on its way)
SYNC_LOG_THRESHOLD = 500  # log progress when this many cheeses are to come (either kind)
PER_PEER = 2  # windows in flight per peer
MAX_AHEAD = 40  # windows held or asked for beyond the next one to apply
MAX_CHAIN = 20000  # headers checked before the bodies (a longer stack: the next round)
WINDOW_TIMEOUT = 20.0  # seconds a peer has for a window before it goes to another
HEADERS_TIMEOUT = 15.0  # seconds the headers peer has to answer GET_HEADERS (else the next peer)
MISMATCH_POINTS = 25  # a body that does not match its header


class HeadersDownload(BaseDownload):
    """One headers-first download: headers from ``peer``, bodies from every peer that has them.

    Same face as ``sync.Download`` (their base: ``download.BaseDownload``).
    """

    def __init__(self, sync: DownloadContext, peer: MemberProtocol, reason: str) -> None:
        super().__init__(sync, peer, reason)
        self.chain = HeaderChain(self.node.stack)
        # header index -> (body, the peer that sent it)
        self.bodies: Dict[int, Tuple[dict, MemberProtocol]] = {}
        self.applied = 0  # headers whose bodies are applied (an index into chain.headers)
        self.next_window = 0  # the first window never asked for
        self.retry: Deque[int] = deque()  # windows to ask again (what is missing of them)
        self.asked: Set[int] = set()  # windows with a request on its way
        self.in_flight: Dict[MemberProtocol, int] = {}  # peer -> its windows on their way
        self.failed: Dict[int, Set[MemberProtocol]] = {}  # window -> the peers that failed it
        self.checked: Dict[int, bool] = {}  # header index -> signatures checked (True: all good)
        self._draining = False
        self.mismatches = 0  # bodies refused for not matching their header (tests, figures)
        self.sources: Dict[MemberProtocol, int] = {}  # peer -> bodies it supplied (tests, figures)
        self.windows: List[Tuple[int, int]] = []  # header index ranges, WINDOW each
        self.index: Dict[str, int] = {}  # smell of a checked header -> its index
        # peers that let a window time out: no more windows
        self.slow: Set[MemberProtocol] = set()

    # -- headers -----------------------------------------------------------------------

    def begin(self) -> None:
        self._ask_headers(self.node.stack.serving.locator())

    def _ask_headers(self, locator: List[str]) -> None:
        msg = {"type": "GET_HEADERS", "locator": locator, "count": MAX_HEADERS}
        d = self.peer.request(msg, timeout=HEADERS_TIMEOUT)
        d.addCallbacks(self._got_headers, self._headers_failed)
        d.addErrback(self.crashed, self.peer)

    def _headers_failed(self, failure: Failure) -> None:
        if self.finished:
            return
        self.rest()
        if failure.check(RequestTimeout):
            # It claimed more work and does not show it: another peer's headers come
            # next, and its host rests and ranks after the others (Sync._failed_claim).
            self.log.info(
                "Sync from {peer}: no HEADERS in {secs:.0f} s for the work it claimed",
                peer=self.peer.label(),
                secs=HEADERS_TIMEOUT,
            )
        self._bodies_or_finish()

    def crashed(self, failure: Failure, proto: MemberProtocol) -> None:
        """A reply that broke its handler: the download ends (one log line, no
        traceback) and ``proto``, whose reply it was, is charged as for a bad message."""
        if self.finished:
            return
        self.log.warn(
            "Sync from {peer} ended: a reply from {bad} broke it ({error})",
            peer=self.peer.label(),
            bad=proto.label(),
            error=f"{failure.type.__name__}: {failure.getErrorMessage()}"[:200],
        )
        proto.misbehaved(ERROR_POINTS["bad-message"], "a reply that broke the sync")
        self.finish()

    def _got_headers(self, reply: dict) -> None:
        if self.finished:
            return
        headers = reply.get("headers")
        if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
            self._drop("a malformed HEADERS reply")
            return
        before = self.chain.tip
        try:
            network = self.node.network
            self.chain.extend([check_header(h, network) for h in headers])
        except (ProtocolError, InvalidCheese) as e:
            self._drop(f"invalid headers ({e.message})")
            return
        if headers and self.chain.tip is before:
            self._drop("HEADERS that do not move forward")
            return
        self.progress_at = self.clock.seconds()
        if len(headers) == MAX_HEADERS and len(self.chain.headers) < MAX_CHAIN:
            tip = self.chain.tip
            assert tip is not None  # it has headers
            self._ask_headers([tip.smell] + self.node.stack.serving.locator())
            return
        claimed = self.peer.peer_work
        if (
            len(headers) < MAX_HEADERS
            and self.chain.work < claimed
            and claimed > self.node.stack.work
        ):
            # The whole of its best stack, and not the work it claimed: nothing of it is
            # downloaded. (A claim we already match is no lie: an orphan's announcer
            # whose turn comes once we hold its stack answers no new headers, and its
            # empty chain has no work to compare.)
            self._drop("headers that do not reach the work it claimed")
            return
        self._bodies_or_finish()

    def _drop(self, why: str) -> None:
        self.log.info("Sync from {peer} stopped: {why}", peer=self.peer.label(), why=why)
        self.peer.misbehaved(BAN_SCORE, why)
        self.finish()

    # -- bodies --------------------------------------------------------------------------

    def _bodies_or_finish(self) -> None:
        if not self.chain.headers or self.chain.work <= self.node.stack.work:
            self.finish()
            return
        tip = self.chain.tip
        assert tip is not None  # there are headers
        # Its headers show that much (an orphan's announcer).
        self.peer.holds(tip.height, tip.smell, tip.work)
        total = len(self.chain.headers)
        self.index = {header["smell"]: i for i, header in enumerate(self.chain.headers)}
        self.windows = [(lo, min(lo + WINDOW, total)) for lo in range(0, total, WINDOW)]
        self.long = total >= SYNC_LOG_THRESHOLD
        if self.long:
            self.log.info(
                "Syncing from {peer}: {n} headers checked (to height {height}); "
                "bodies from {helpers} peers",
                peer=self.peer.label(),
                n=total,
                height=tip.height,
                helpers=len(self._helpers(0)),
            )
        self._assign()

    def _helpers(self, window: int) -> List[MemberProtocol]:
        """The peers that can be asked for a window: the headers peer, and
        ``headers`` peers whose tip is a checked header at or after the window's
        end (a claim of work alone is not enough), that have not failed it and
        have not let a window time out."""
        last = self.windows[window][1] - 1
        failed = self.failed.get(window, ())
        return [
            p
            for p in self.directory.peers.values()
            if HEADERS in p.peer_features
            and not p.closing
            and p not in failed
            and p not in self.slow
            and (p is self.peer or self.index.get(p.peer_tip, -1) >= last)
        ]

    def _assign(self) -> None:
        """Give waiting windows to the least busy helpers, at most PER_PEER each."""
        while not self.finished:
            if self.retry:
                window = self.retry[0]
            elif (
                self.next_window < len(self.windows)
                and self.next_window <= self.applied // WINDOW + MAX_AHEAD
            ):
                window = self.next_window
            else:
                break
            helpers = [p for p in self._helpers(window) if self.in_flight.get(p, 0) < PER_PEER]
            if not helpers:
                if not self.asked and not self._helpers(window):
                    self._stalled(window)
                break
            # The least busy; on a tie the headers peer, whose headers showed its stack.
            proto = min(helpers, key=lambda p: (self.in_flight.get(p, 0), p is not self.peer))
            if self.retry:
                self.retry.popleft()
            else:
                self.next_window += 1
            self._request(window, proto)

    def _request(self, window: int, proto: MemberProtocol) -> None:
        lo, hi = self.windows[window]
        smells = [self.chain.headers[i]["smell"] for i in range(lo, hi) if i not in self.bodies]
        if not smells:
            self._drain()
            return
        self.asked.add(window)
        self.in_flight[proto] = self.in_flight.get(proto, 0) + 1
        d = proto.request({"type": "GET_CHEESES", "smells": smells}, timeout=WINDOW_TIMEOUT)
        d.addCallbacks(
            self._got_window,
            self._window_failed,
            callbackArgs=(window, proto),
            errbackArgs=(window, proto),
        )
        d.addErrback(self.crashed, proto)

    def _done_asking(self, window: int, proto: MemberProtocol) -> None:
        self.asked.discard(window)
        self.in_flight[proto] -= 1

    def _got_window(self, reply: dict, window: int, proto: MemberProtocol) -> None:
        self._done_asking(window, proto)
        if self.finished:
            return
        cheeses = reply.get("cheeses")
        if not isinstance(cheeses, list):
            proto.misbehaved(ERROR_POINTS["bad-message"], "a malformed CHEESES reply")
            cheeses = []
        lo, hi = self.windows[window]
        where = {self.chain.headers[i]["smell"]: i for i in range(lo, hi) if i not in self.bodies}
        arrived: List[int] = []
        for cheese in cheeses:
            smell = cheese.get("smell") if isinstance(cheese, dict) else None
            i = where.get(smell) if isinstance(smell, str) else None
            if i is None or i in self.bodies:
                continue  # not asked for, or twice: ignored
            if not matches_fields(cheese, self.chain.headers[i]):  # its info_hash: in _verified
                self._mismatch(proto)  # still missing: asked of another peer below
                continue
            del where[cheese["smell"]]
            self.bodies[i] = (cheese, proto)
            self.sources[proto] = self.sources.get(proto, 0) + 1
            arrived.append(i)
        if arrived:
            self.progress_at = self.clock.seconds()
        if where:  # it refused some, or sent bodies that do not match: another peer
            self.failed.setdefault(window, set()).add(proto)
            self.retry.append(window)
        if arrived:
            self._verify(arrived)
        self._assign()

    def _window_failed(self, failure: Failure, window: int, proto: MemberProtocol) -> None:
        self._done_asking(window, proto)
        if self.finished:
            return
        if failure.check(RequestTimeout):
            self.log.info("Sync: {peer} is slow; its windows go to other peers", peer=proto.label())
            self.slow.add(proto)
        self.failed.setdefault(window, set()).add(proto)
        self.retry.append(window)
        self._assign()

    def _stalled(self, window: int) -> None:
        """No peer can give us this window: apply what we have, stop; the next
        STATS round may find one."""
        lo, _ = self.windows[window]
        self.log.info(
            "Sync from {peer} stopped: no peer has the cheese at height {height}",
            peer=self.peer.label(),
            height=self.chain.nodes[lo].height,
        )
        self.rest()
        self.finish()

    # -- applying -----------------------------------------------------------------------

    def _verify(self, indices: List[int]) -> None:
        """Check the signatures of bodies as soon as they arrive (in threads on a
        real reactor, while earlier ones are applied); ``_drain`` applies in order."""
        bodies = [self.bodies[i] for i in indices]
        self.sync.verify_signatures(
            [cheese for cheese, _ in bodies], with_hashes=True
        ).addCallbacks(self._verified, self._broken, (indices, bodies)).addErrback(self._broken)

    def _verified(
        self,
        result: Tuple[Set[int], Dict[int, Optional[str]]],
        indices: List[int],
        bodies: List[Tuple[dict, MemberProtocol]],
    ) -> None:
        if self.finished:
            return
        signed, hashes = result
        lying = False
        for pos, i in enumerate(indices):
            if self.bodies.get(i) is not bodies[pos]:
                continue
            if hashes.get(pos) != self.chain.headers[i]["info_hash"]:  # not the body of that header
                proto = bodies[pos][1]
                del self.bodies[i]
                self.sources[proto] -= 1
                self._mismatch(proto)
                window = i // WINDOW
                self.failed.setdefault(window, set()).add(proto)
                if window not in self.retry:
                    self.retry.append(window)
                lying = True
                continue
            self.checked[i] = pos in signed
        if lying:
            self._assign()
        self._drain()

    def _mismatch(self, proto: MemberProtocol) -> None:
        self.mismatches += 1
        proto.misbehaved(MISMATCH_POINTS, "a body that does not match its header")

    def _drain(self) -> None:
        """Apply the checked bodies that follow what is applied, in order."""
        if self._draining:
            return
        self._draining = True
        try:
            while not self.finished:
                start, end = self.applied, self.applied
                while end in self.checked and end - start < APPLY_BATCH:
                    end += 1
                if end == start:
                    if start == len(self.chain.headers):
                        self.finish()
                    return
                if end - start < APPLY_BATCH and end < len(self.chain.headers) and self.asked:
                    return  # more is on its way: one store transaction for a bigger batch
                if not self._apply(start, end):
                    return
                self._assign()
        finally:
            self._draining = False

    def _apply(self, start: int, end: int) -> bool:
        """Apply bodies start..end-1; False if the download ended."""
        # Runs of bodies from one peer: each run is applied with that peer as its source.
        i = start
        while i < end:
            source = self.bodies[i][1]
            j = i
            while j < end and self.bodies[j][1] is source:
                j += 1
            run = [self.bodies[k][0] for k in range(i, j)]
            run_signed = {k - i for k in range(i, j) if self.checked[k]}
            hashes = [
                self.chain.headers[k]["info_hash"] for k in range(i, j)
            ]  # _verified checked them
            try:
                added, error = self.sync.apply_chunk(source, run, run_signed, hashes)
            except StorageError:
                self.finish()
                return False
            self.added += added
            if error is not None:
                self.stop_invalid(source, error)
                return False
            i = j
        for k in range(start, end):
            del self.bodies[k]
            del self.checked[k]
        self.applied = end
        self.progress_at = self.clock.seconds()
        if self.long and self.chain.tip is not None:
            self.log_progress(self.chain.tip.height)
        return True

    # -- the end ------------------------------------------------------------------------

    def release(self) -> None:
        self.bodies.clear()
        self.checked.clear()
