"""The member's miner port (docs/protocol.md section 6), default 127.0.0.1:24333.

Messages, JSON lines:

- member -> miner, pushed: ``{"type":"WORK","job":J,"prefix":TEXT,"bits":B,"cheese":C}``
  on connect and whenever the template changes (new tip: next reactor turn;
  new transactions: coalesced, at most every 0.5 s), whether or not the
  member mines itself. ``J`` is an integer.
- miner -> member: ``{"type":"SUBMIT","job":J,"nonce":N}``; the reply is
  ``{"type":"SUBMIT_REPLY","job":J,"accepted":true,"smell":S}``, or
  ``ERROR stale`` (the job is unknown or its parent is no longer the best
  tip) or ``ERROR invalid-cheese`` (the smell misses the bits, or the node
  refuses the cheese). ``id`` is echoed. A stale SUBMIT is a race every
  miner loses now and then, so it does not count towards the 10 errors
  after which a connection is closed.

The factory keeps the ``MAX_JOBS`` most recent jobs; an accepted cheese goes
through ``node.submit_cheese(cheese, source="miner")``, so it is stored and
relayed like any other.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any, Optional, Set

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.cheese import MAX_NONCE, meets_pow
from cheesecoin.core.errors import InvalidCheese, ProtocolError, StorageError
from cheesecoin.core.node import MINED
from cheesecoin.mining.interfaces import MiningNode
from cheesecoin.mining.jobs import Job, JobId, get_job_id
from cheesecoin.mining.templates import TemplateFeed, make_job
from cheesecoin.wire import codec as wire
from cheesecoin.wire.lineproto import JsonLineProtocol

MAX_JOBS = 16


class MinerPortProtocol(JsonLineProtocol):
    """One external miner's connection: pushed WORK, SUBMIT -> SUBMIT_REPLY."""

    factory: "MinerPortFactory"

    def connectionMade(self) -> None:
        self.clock = self.factory.clock
        self.start_producing()  # a miner that does not read is not read from either
        self.factory.clients.add(self)
        self.send_work(self.factory.current_job())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closing = True
        self.release_buffers()
        self.factory.clients.discard(self)

    def send_work(self, job: Job) -> None:
        # Pushed; to a miner that is not reading, only the newest WORK waits.
        self.push_line(wire.dumps(job.work_message()), key="WORK")

    def send_error(
        self, code: str, text: str, msg_id: Any = None, points: Optional[int] = None
    ) -> None:
        # Every miner loses a race now and then (a cheese found just as the
        # tip moved): a stale SUBMIT is not misbehaviour, so it does not count
        # towards the connection's MAX_ERRORS.
        if code == "stale":
            self.errors -= 1
        super().send_error(code, text, msg_id, points)

    def msg_SUBMIT(self, msg: dict) -> None:
        job_id = get_job_id(msg)
        nonce = wire.get_int(msg, "nonce", 0, MAX_NONCE)
        smell = self.factory.submit(job_id, nonce, self.peer_label())
        self.reply(msg, {"type": "SUBMIT_REPLY", "job": job_id, "accepted": True, "smell": smell})


class MinerPortFactory(Factory[MinerPortProtocol]):
    """Serves WORK for ``node``'s best tip, paying ``miner_address``; checks SUBMITs."""

    protocol = MinerPortProtocol
    log = Logger()

    def __init__(
        self,
        node: MiningNode,
        miner_address: str,
        clock: IReactorTime,
        tx_delay: float = 0.5,
        max_jobs: int = MAX_JOBS,
    ) -> None:
        self.node = node
        self.clock = clock
        self.miner_address = miner_address
        self.max_jobs = max_jobs
        self.clients: Set[MinerPortProtocol] = set()
        self.jobs: "OrderedDict[JobId, Job]" = OrderedDict()
        self.current: Optional[Job] = None
        # Job numbers differ across restarts, so an old job is never taken for a new one.
        self._next_id = random.randrange(1, 2**31)
        self.stopped = False
        self.feed = TemplateFeed(node, self._template_changed, clock, tx_delay)

    def startFactory(self) -> None:
        self.stopped = False
        self.feed.start()

    def stopFactory(self) -> None:
        """The port closed: stop following the node and let the miners go (they reconnect)."""
        self.stopped = True
        self.feed.stop()
        for client in list(self.clients):
            client.close()

    def current_job(self) -> Job:
        """The job on the current template (made now if the template changed)."""
        if self.current is None:
            job = make_job(self.node, self.miner_address, self._next_id)
            self._next_id += 1
            self.jobs[job.job_id] = job
            while len(self.jobs) > self.max_jobs:
                self.jobs.popitem(last=False)
            self.current = job
        return self.current

    def _template_changed(self) -> None:
        self.current = None
        if self.clients:
            job = self.current_job()
            for client in list(self.clients):
                client.send_work(job)

    def submit(self, job_id: JobId, nonce: int, who: str = "?") -> str:
        """Complete job ``job_id`` with ``nonce`` and submit it; its smell, or ProtocolError."""
        if self.stopped:
            raise ProtocolError("busy", "the member is shutting down")
        job = self.jobs.get(job_id) if isinstance(job_id, int) else None
        if job is None:
            raise ProtocolError("stale", f"job {str(job_id)[:40]} is unknown (too old?)")
        if job.parent_smell != self.node.stack.tip.smell:
            raise ProtocolError("stale", f"job {job_id}'s parent is no longer the best tip")
        cheese = job.complete(nonce)
        if not meets_pow(cheese["smell"], job.bits):
            raise ProtocolError(
                "invalid-cheese", f"smell {cheese['smell']} does not meet {job.bits} bits"
            )
        try:
            self.node.submit_cheese(cheese, source=MINED)
        except InvalidCheese as e:
            raise ProtocolError("invalid-cheese", e.message)
        except StorageError:  # the disk: the node reports it (once) and the member stops
            raise ProtocolError("busy", "the member cannot store cheeses right now")
        self.log.info(
            "Mined cheese {height} {smell} (external miner {who})",
            height=job.height,
            smell=cheese["smell"],
            who=who,
        )
        return cheese["smell"]
