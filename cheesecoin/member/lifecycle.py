"""How a member stops: every other part first, then the state is saved and the
stack closed (``MemberService``, ``Shutdown``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

from cheesecoin.member import links
from cheesecoin.storage.peerfile import save_peers

if TYPE_CHECKING:
    from cheesecoin.core.node import MemberNode
    from cheesecoin.p2p.manager import PeerManager
    from cheesecoin.web.events import EventLog

log = Logger(namespace="cheesecoin.member")


class MemberService(MultiService):
    """Stops every other part (ports, miner, tracker link, timers) and waits
    for them before the shutdown part saves the mempool and closes the stack,
    so nothing writes to a closed store."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdown: Optional[Service] = None
        # for tests and tools: set by makeService
        self.node: Optional[MemberNode] = None
        self.manager: Optional[PeerManager] = None

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        others = [s for s in reversed(list(self)) if s is not self.shutdown]
        done = gatherResults([maybeDeferred(s.stopService) for s in others], consumeErrors=True)
        done.addErrback(lambda f: log.failure("Error while stopping the member", f))
        shutdown = self.shutdown
        if shutdown is not None:
            done.addBoth(lambda _: shutdown.stopService())
        return done


class Shutdown(Service):
    """Saves the mempool and closes the stack when the member stops."""

    def __init__(self, node: MemberNode, manager: PeerManager) -> None:
        self.node = node
        self.manager = manager
        self.events: Optional[EventLog] = None  # whose streams end cleanly

    def save_mempool(self) -> None:
        try:
            self.node.save_mempool()
        except OSError as e:
            log.warn("Cannot save the mempool: {why}", why=e)

    def save_peers(self) -> None:
        """Keep the members that worked in the data directory (dialled first at the next start)."""
        if self.node.data_dir is None:
            return
        try:
            save_peers(self.node.data_dir, self.manager.addresses.to_save())
        except OSError as e:
            log.warn("Cannot save the address book: {why}", why=e)

    def save_state(self) -> None:
        self.save_mempool()
        self.save_peers()
        if self.node.data_dir is not None:
            links.save_pins_of(self.manager, self.node.data_dir)

    def stopService(self) -> None:
        super().stopService()
        if self.events is not None:
            self.events.close_all()
        self.manager.close_all()
        self.save_state()
        self.node.stack.close()
        log.info("Member stopped at height {height}", height=self.node.stack.height)
