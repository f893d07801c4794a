"""What both kinds of download share (``sync.Download`` by locator from one
peer, ``headers_sync.HeadersDownload`` headers first with bodies from several):
the peer it began with, its figures, the watchdog's ``progress_at``, its end
(``finish``, once, telling the sync), the errback that ends it when a handler
breaks, the rest a peer takes after failing it, the invalid cheese that stops
it and the progress line of a long one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from cheesecoin.core.errors import InvalidCheese
from cheesecoin.p2p.errors import ERROR_POINTS
from cheesecoin.p2p.interfaces import DownloadContext

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol


class BaseDownload:
    """One download from ``peer``: ``start()``, ``finish()``, ``done`` (fires with
    the number of cheeses added), ``added``, ``progress_at`` (the watchdog's).
    ``sync`` runs it (a ``DownloadContext``: ``sync.Sync``)."""

    def __init__(self, sync: DownloadContext, peer: MemberProtocol, reason: str) -> None:
        self.sync = sync
        self.node = sync.node
        self.clock = sync.clock
        self.log = sync.log
        self.directory = sync.directory
        self.peer = peer
        self.reason = reason
        self.finished = False
        self.added = 0
        self.started = self.clock.seconds()
        self.claimed = peer.peer_work  # the work it claimed when the download began
        self.done: Deferred = Deferred()
        self.long = False  # long enough to log progress
        self.progress_at = self.started  # last time it moved forward (watchdog)

    def start(self) -> None:
        self.peer.download = self
        self.sync.running += 1
        self.begin()

    def begin(self) -> None:
        """The first request (each kind its own)."""
        raise NotImplementedError

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.release()
        self.sync.ended(self)

    def release(self) -> None:
        """Drop what is held for the download once it ends (each kind its own)."""

    def rest(self) -> None:
        """The peer failed this download: it is not asked again for a while."""
        self.peer.sync_idle_until = self.clock.seconds() + self.sync.idle_seconds

    def _broken(self, failure: Failure) -> None:
        """Checking or applying failed on our side: the download ends with one log
        line (no traceback)."""
        if self.finished:
            return
        self.log.error(
            "Sync from {peer} failed: {error}",
            peer=self.peer.label(),
            error=f"{failure.type.__name__}: {failure.getErrorMessage()}"[:200],
        )
        self.finish()

    def stop_invalid(self, source: MemberProtocol, error: InvalidCheese) -> None:
        """``source`` sent a cheese that broke a rule: it pays (if the fault is
        its own), the peer rests, the download ends."""
        if error.permanent:
            source.misbehaved(
                ERROR_POINTS["invalid-cheese"], f"sent an invalid cheese: {error.message}"
            )
        self.log.info(
            "Sync from {peer} stopped: invalid cheese ({why})",
            peer=self.peer.label(),
            why=error.message,
        )
        self.rest()
        self.finish()

    def log_progress(self, target: int) -> None:
        """The progress line of a long download: our height of ``target``."""
        height = self.node.stack.height
        self.log.info(
            "Syncing from {peer}: {height}/{target} ({pct}%)",
            peer=self.peer.label(),
            height=height,
            target=target,
            pct=int(100 * height / max(target, 1)),
        )
