# Syncing by locator: docs/protocol.md section 5 (version 1, any peer).
#
# Messages it speaks:
#   request  {"type":"GET_CHEESES","locator":[S..],"count":K}  -> CHEESES {"cheeses"} (we ask)
# (headers first, feature ``headers``: cheesecoin.p2p.headers_sync)
"""Syncing: downloading the stack of a peer with more work.

``Sync`` picks the peer (one we dialled before one that dialled us, then the
one with the most work, if more than ours) and runs one download at a time
(an orphan announced meanwhile waits for its turn, ``MAX_ORPHAN_ASKS`` of
them); ``watchdog`` ends a download that makes no progress for
``STALL_SECONDS``; a ``Download`` asks for chunks of up to 500
cheeses by locator, pipelined (the next is asked for while the last one's
signatures are checked in the CPU thread pool), and applies them in order in
one store batch each.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, AbstractSet, Any, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.errors import InvalidCheese, StorageError
from cheesecoin.core.headers import checked_bodies
from cheesecoin.core.tx import signed_cheeses
from cheesecoin.p2p.download import BaseDownload
from cheesecoin.p2p.errors import RemoteError, RequestTimeout
from cheesecoin.p2p.features import HEADERS
from cheesecoin.p2p.headers_sync import SYNC_LOG_THRESHOLD, HeadersDownload
from cheesecoin.p2p.interfaces import DownloadContext, PeerDirectory, PeerNode, RelayView
from cheesecoin.p2p.protocol import short
from cheesecoin.util.cores import usable_cores
from cheesecoin.util.cpuprocesspool import defer_to_processes, warm_up
from cheesecoin.util.cputhreadpool import defer_to_cpu
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import MAX_COUNT

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

STATS_INTERVAL = 60.0  # seconds between stack comparisons; a peer that failed us rests as long
RELAY_TAIL = 10  # cheeses announced after a sync batch
WARM_UP_GAP = 100  # cheeses behind a peer that start the worker processes with the download
PROCESS_MIN_TXS = 200  # signatures in one check worth sending to worker processes
MAX_QUEUED_CHUNKS = 2  # downloaded chunks waiting to be checked, at most
# A download with no progress this long is ended (longer than any request's timeout).
STALL_SECONDS = 90.0
MAX_REST = 3600.0  # the longest rest of a host whose claims of more work keep failing
MAX_STRUCK = 1024  # hosts whose failed claims are remembered
MAX_ORPHAN_ASKS = 8  # peers whose orphan announcements wait for the running download to end


class Sync:
    """Which peer we download from, and how downloaded cheeses are checked and
    applied: one ``Download`` at a time, from the peer with the most work.

    Built before the relay, which ``use_relay`` then connects (downloaded
    cheeses are announced in one relay batch)."""

    idle_seconds = STATS_INTERVAL  # how long a peer that failed a download rests
    relay: RelayView

    def __init__(
        self,
        node: PeerNode,
        reactor: IReactorTime,
        log: Logger,
        directory: PeerDirectory,
        verify_in_threads: bool = False,
    ) -> None:
        self.node = node
        self.clock = reactor  # its time, and with a real reactor its CPU thread pool and workers
        self.log = log
        self.directory = directory
        # signatures in the CPU thread pool (a real reactor)
        self.verify_in_threads = verify_in_threads
        self.running = 0  # downloads started and not finished
        self.downloads: Set[BaseDownload] = set()  # those downloads (the watchdog's)
        # announcers of orphans, waiting
        self.orphan_asks: "OrderedDict[MemberProtocol, None]" = OrderedDict()
        # host -> downloads from it in a row that added nothing although it claimed more work
        self.struck: "OrderedDict[str, int]" = OrderedDict()

    def use_relay(self, relay: RelayView) -> None:
        """Connect the relay (built after the sync: it starts downloads)."""
        self.relay = relay

    def maybe_sync(self) -> Optional[BaseDownload]:
        """Start downloading from the peer with the most work, if it has more than us."""
        if (
            self.running
        ):  # one download at a time (asked on every STATS reply: no scan of the peers)
            return None
        now = self.clock.seconds()
        ours = self.node.stack.work
        candidates = [
            p
            for p in self.directory.peers.values()
            if p.peer_work > ours and p.sync_idle_until <= now and not p.closing
        ]
        if not candidates:
            return None
        # Claims are not proof: a host whose claims failed before goes after the
        # others (the more failures, the later), a peer we dialled before one that
        # dialled us (inbound peers are what an attacker can multiply; Bitcoin
        # Core starts its headers sync from an outbound peer likewise); among the
        # peers we dialled the most work claimed, among the others the longest
        # connected (a liar dropped for a false claim comes back as the newest,
        # from another address if it has many: the honest peer's turn comes).
        struck = self.struck
        best = max(
            candidates,
            key=lambda p: (
                -struck.get(p.peer_host() or "?", 0),
                p.outbound,
                p.peer_work if p.outbound else -p.connected_at,
            ),
        )
        return self.start_download(best, "more work")

    def _failed_claim(self, peer: MemberProtocol) -> None:
        """``peer`` claimed more work and a download from it added nothing: its host
        rests twice as long as the last time (from STATS_INTERVAL up to MAX_REST) and
        ranks after hosts that have not failed."""
        host = peer.peer_host() or "?"
        failures = self.struck.pop(host, 0) + 1
        self.struck[host] = failures
        while len(self.struck) > MAX_STRUCK:
            self.struck.popitem(last=False)
        rest = min(MAX_REST, STATS_INTERVAL * 2 ** min(failures - 1, 16))
        peer.sync_idle_until = max(peer.sync_idle_until, self.clock.seconds() + rest)

    def start_download(self, proto: MemberProtocol, reason: str) -> Optional[BaseDownload]:
        """Headers first (bodies from several peers) when both list ``headers``,
        else the version-1 download by locator from this one peer. One at a
        time: an orphan's announcer asked for meanwhile waits for its turn."""
        if proto.download is not None or proto.closing:
            return None
        if self.running:
            if reason == "orphan":
                self.orphan_asks[proto] = None
                self.orphan_asks.move_to_end(proto)
                while len(self.orphan_asks) > MAX_ORPHAN_ASKS:
                    self.orphan_asks.popitem(last=False)
            return None
        if self.verify_in_threads and proto.peer_height - self.node.stack.height >= WARM_UP_GAP:
            warm_up(
                self.clock, checked_bodies, []
            )  # the signature workers start while headers come
        if HEADERS in self.directory.features and HEADERS in proto.peer_features:
            download: BaseDownload = HeadersDownload(self, proto, reason)
        else:
            download = Download(self, proto, reason)
        self.downloads.add(download)
        download.start()
        return download

    def watchdog(self) -> None:
        """Called every few seconds: end each download that made no progress for STALL_SECONDS."""
        now = self.clock.seconds()
        for download in [d for d in self.downloads if now - d.progress_at > STALL_SECONDS]:
            self.log.info(
                "Sync from {peer} ended: no progress for {secs:.0f} s",
                peer=download.peer.label(),
                secs=now - download.progress_at,
            )
            download.peer.sync_idle_until = now + STATS_INTERVAL
            download.finish()

    def ended(self, download: BaseDownload) -> None:
        """A download (either kind) has finished: log it, fire its ``done``, maybe
        start the next."""
        self.running -= 1
        self.downloads.discard(download)
        if download.peer.download is download:
            download.peer.download = None
        self._report(download)
        download.done.callback(download.added)
        self.download_finished(download)

    def _report(self, download: BaseDownload) -> None:
        """The one line a finished download logs (and the rest of its peer's time)."""
        now = self.clock.seconds()
        if download.added == 0:
            download.peer.sync_idle_until = max(download.peer.sync_idle_until, now + STATS_INTERVAL)
            if download.claimed > self.node.stack.work:  # still more than we have
                self._failed_claim(download.peer)
        else:
            self.struck.pop(download.peer.peer_host() or "?", None)  # it delivered
        if download.added and (download.long or download.added >= RELAY_TAIL):
            stack = self.node.stack
            self.log.info(
                "Synced from {peer}: {added} cheeses in {secs:.2f} s, height {height} tip {tip}",
                peer=download.peer.label(),
                added=download.added,
                secs=now - download.started,
                height=stack.height,
                tip=short(stack.tip.smell),
            )

    def status(self) -> Optional[str]:
        """Why the member is not ready: a download from a peer with more work, or None."""
        for peer in self.directory.peers.values():
            download = peer.download
            if download is not None and peer.peer_work > self.node.stack.work:
                return (
                    f"downloading from {peer.label()}: height {self.node.stack.height} "
                    f"of {peer.peer_height}"
                )
        return None

    def download_finished(self, download: BaseDownload) -> None:
        """The next download: an orphan's announcer still here (its header passed
        its proof of work, which a claim does not), else a peer with more work."""
        while self.orphan_asks and not self.running:
            proto, _ = self.orphan_asks.popitem(last=False)
            if proto in self.directory.peers.values() and not proto.closing:
                self.start_download(proto, "orphan")
        self.maybe_sync()

    def verify_signatures(self, cheeses: List[dict], with_hashes: bool = False) -> Deferred:
        """Deferred set of the indices of ``cheeses`` whose transactions are all
        well formed and signed (with ``with_hashes``: that set and each body's
        info_hash by index, ``checked_bodies``): in worker processes or the
        CPU thread pool (one part per core) with a real reactor, at once with
        a fake clock."""
        check = checked_bodies if with_hashes else signed_cheeses
        if not self.verify_in_threads or len(cheeses) < 2:
            return succeed(check(cheeses))
        parts = max(1, min(usable_cores(), len(cheeses)))
        size = -(-len(cheeses) // parts)
        reactor = self.clock
        in_processes = parts > 1 and sum(map(_tx_count, cheeses)) >= PROCESS_MIN_TXS

        def job(i: int) -> Deferred:
            part = cheeses[i : i + size]
            if not in_processes:
                return defer_to_cpu(check, part, i, reactor=reactor)
            # worker processes (util/cpuprocesspool.py); threads if the pool fails
            return defer_to_processes(check, part, i, reactor=reactor).addErrback(
                lambda _f: defer_to_cpu(check, part, i, reactor=reactor)
            )

        def union(results: list) -> Any:
            if not with_hashes:
                return set().union(*results)
            hashes: dict = {}
            for _, part_hashes in results:
                hashes.update(part_hashes)
            return set().union(*(signed for signed, _ in results)), hashes

        jobs = [job(i) for i in range(0, len(cheeses), size)]
        return gatherResults(jobs, consumeErrors=True).addCallback(union)

    def apply_chunk(
        self,
        proto: MemberProtocol,
        cheeses: List[dict],
        signed: AbstractSet[int] = frozenset(),
        hashes: Optional[List[str]] = None,
    ) -> Tuple[int, Optional[InvalidCheese]]:
        """Add downloaded cheeses in one batch; (added, the first InvalidCheese or None).
        Signatures are not checked again for the cheeses in ``signed``; ``hashes``
        are the bodies' info_hashes when they were checked against headers."""
        added = 0
        with self.relay.relay_batch(proto), self.node.stack.batch():
            for i, cheese in enumerate(cheeses):
                try:
                    result = self.node.submit_cheese(
                        cheese, proto, i not in signed, hashes[i] if hashes is not None else None
                    )
                except InvalidCheese as e:
                    return added, e
                if result.status == "added":
                    added += 1
                    self.directory.delivered(proto, len(result.accepted))
        return added, None


def _tx_count(cheese: Any) -> int:
    info = cheese.get("unit_of_information") if isinstance(cheese, dict) else None
    txs = info.get("transactions") if isinstance(info, dict) else None
    return len(txs) if isinstance(txs, list) else 0


class Download(BaseDownload):
    """Pipelined download of a peer's best stack by locator, in chunks of up to 500.

    As soon as a chunk arrives the next one is asked for (after the chunk's
    last smell), then the chunk is applied inside ``stack.batch()``. Ends on
    an empty chunk, at the peer's known tip, on invalid data, a stall or a
    lost connection; ``done`` fires with the number of cheeses added.
    """

    def __init__(
        self, sync: DownloadContext, peer: MemberProtocol, reason: str, count: int = MAX_COUNT
    ) -> None:
        super().__init__(sync, peer, reason)
        self.count = count
        self.received = 0
        self.last_smell: Optional[str] = None
        self.start_height = self.node.stack.height
        self.long = peer.peer_height - self.start_height >= SYNC_LOG_THRESHOLD
        self._queue: List[_Chunk] = []  # received, signatures being checked or checked, not applied
        self._asking = False  # a GET_CHEESES is on its way
        self._more = True  # the peer has more to send

    def begin(self) -> None:
        if self.long:
            self.log.info(
                "Syncing from {peer}: {height}/{target} (0%)",
                peer=self.peer.label(),
                height=self.start_height,
                target=self.peer.peer_height,
            )
        self._ask(self.node.stack.serving.locator())

    def _ask(self, locator: List[str]) -> None:
        self._asking = True
        d = self.peer.request({"type": "GET_CHEESES", "locator": locator, "count": self.count})
        d.addCallbacks(self._got, self._failed).addErrback(self._broken)

    def _ask_next(self) -> None:
        """Pipelining: ask for the chunk after the last one received while earlier
        ones are checked, but hold at most MAX_QUEUED_CHUNKS unchecked ones."""
        if (
            self._more
            and not self._asking
            and not self.finished
            and len(self._queue) < MAX_QUEUED_CHUNKS
        ):
            assert self.last_smell is not None  # a chunk came
            self._ask([self.last_smell] + self.node.stack.serving.locator())

    def _failed(self, failure: Failure) -> None:
        self._asking = False
        if self.finished:
            return
        if failure.check(RequestTimeout):
            self.log.info("Sync from {peer} stalled; trying another peer", peer=self.peer.label())
            self.rest()
        elif not failure.check(ConnectionLost, RemoteError):
            self.log.failure("Sync from {peer} failed", failure, peer=self.peer.label())
        self._stop_after_received()

    def _got(self, reply: dict) -> None:
        self._asking = False
        if self.finished:
            return
        cheeses = reply.get("cheeses")
        if (
            not isinstance(cheeses, list)
            or len(cheeses) > self.count
            or not all(isinstance(c, dict) for c in cheeses)
        ):
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
            or any(
                cheeses[i].get("parent_smell") != cheeses[i - 1].get("smell")
                for i in range(1, len(cheeses))
            )
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
        self.progress_at = self.clock.seconds()
        at_end = last == self.peer.peer_tip
        self._more = not at_end
        self.received += len(cheeses)
        chunk = _Chunk(cheeses, at_end)
        self._queue.append(chunk)
        self._ask_next()  # before checking this chunk
        # Signatures are checked (in threads) as soon as a chunk arrives, while
        # the chunk before it is applied; chunks are applied in order.
        checking = self.sync.verify_signatures(cheeses)
        checking.addCallbacks(self._checked, self._broken, (chunk,)).addErrback(self._broken)

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

    def _apply(self, signed: Set[int], cheeses: List[dict], at_end: bool) -> None:
        try:
            added, error = self.sync.apply_chunk(self.peer, cheeses, signed)
        except StorageError:  # our disk failed: the node reports it, once; stop here
            self.finish()
            return
        self.added += added
        self.progress_at = self.clock.seconds()
        if error is not None:
            self.stop_invalid(self.peer, error)
            return
        if self.long:
            self.log_progress(max(self.peer.peer_height, self.node.stack.height, 1))
        if at_end:
            self.finish()


class _Chunk:
    """A received CHEESES chunk; ``signed`` is set once its signatures are checked."""

    __slots__ = ("cheeses", "at_end", "signed")

    def __init__(self, cheeses: List[dict], at_end: bool) -> None:
        self.cheeses = cheeses
        self.at_end = at_end
        self.signed: Optional[Set[int]] = None
