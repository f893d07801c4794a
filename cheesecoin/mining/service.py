"""``MiningService``: the built-in miner of a member.

It restarts the search (``cheesecoin.mining.searchers``) on every template
change (``cheesecoin.mining.templates``) and submits a found cheese with
``node.submit_cheese(cheese, source="miner")`` only if its parent is still
the best tip (never a stale cheese).
"""

from __future__ import annotations

import itertools
from typing import Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from cheesecoin.core.errors import InvalidCheese, StorageError
from cheesecoin.core.node import MINED
from cheesecoin.core.pow import backend as pow_backend
from cheesecoin.mining.interfaces import MiningNode, MiningReactor, Searcher
from cheesecoin.mining.jobs import Job, random_start
from cheesecoin.mining.searchers import HashMeter, make_searcher
from cheesecoin.mining.templates import TemplateFeed, make_job
from cheesecoin.util.cores import usable_cores


class MiningService(Service):
    """Mines on a member's best tip with ``workers`` workers (0: every core).

    Registers with the node (``register_miner``): ``mining`` and ``hashrate()``
    are read by the API.
    """

    log = Logger()

    def __init__(
        self,
        node: MiningNode,
        miner_address: str,
        workers: int,
        reactor: MiningReactor,
        tx_delay: float = 0.5,
    ) -> None:
        self.node = node
        self.miner_address = miner_address
        self.workers = workers if workers > 0 else usable_cores()
        self.reactor = reactor
        self.meter = HashMeter()
        self.feed = TemplateFeed(node, self._template_changed, reactor, tx_delay)
        self.searcher: Optional[Searcher] = None
        self.job: Optional[Job] = None
        self.mined = 0
        self._ids = itertools.count(1)
        node.register_miner(self)

    @property
    def mining(self) -> bool:
        return bool(self.running)

    def hashrate(self) -> float:
        """SHA1 evaluations per second over the last few seconds."""
        return self.meter.rate()

    def startService(self) -> None:
        super().startService()
        self.meter.restart()
        self.searcher = make_searcher(self.workers, self._found, self.meter, self.reactor)
        self.feed.start()
        kind = "thread" if self.workers == 1 else "processes"
        self.log.info(
            "Mining for {address} with {n} worker {kind} ({backend} nonce search)",
            address=self.miner_address,
            n=self.workers,
            kind=kind,
            backend=pow_backend(),
        )
        self._template_changed()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self.feed.stop()
        self.job = None
        searcher, self.searcher = self.searcher, None
        if searcher is None:
            return defer.succeed(None)
        return searcher.shutdown()

    def _template_changed(self) -> None:
        if not self.running or self.searcher is None:
            return
        self.job = make_job(self.node, self.miner_address, next(self._ids))
        self.searcher.search(self.job, random_start())

    def _found(self, job: Job, nonce: int, smell: str) -> None:
        tip = self.node.stack.tip
        if job.parent_smell != tip.smell:
            self.log.info(
                "Dropped a stale cheese {height} {smell}: the tip moved",
                height=job.height,
                smell=smell,
            )
            return
        cheese = job.complete(nonce)
        if cheese["smell"] != smell:  # pragma: no cover - a broken worker
            self.log.error(
                "A worker reported smell {smell} for nonce {nonce}, not {real}",
                smell=smell,
                nonce=nonce,
                real=cheese["smell"],
            )
            return
        try:
            self.node.submit_cheese(cheese, source=MINED)
        except InvalidCheese as e:
            self.log.warn(
                "Our own cheese {height} was refused: {why}", height=job.height, why=e.message
            )
            self._template_changed()
            return
        except StorageError:  # the node reports it (once) and the member stops
            return
        self.mined += 1
        self.log.info("Mined cheese {height} {smell}", height=job.height, smell=smell)
