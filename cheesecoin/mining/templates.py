"""Mining templates: the candidate cheese and its job, and when it changes.

``candidate`` builds a candidate child of a stack's tip (docs/protocol.md
s.3: ``next_bits``, the miner's address, timestamp max(now, parent's));
``make_template``/``make_job`` fill it with a member's mempool transactions by
fee (the job itself is ``cheesecoin.mining.jobs``). ``TemplateFeed`` tells its
owner when that candidate changes: on the next reactor turn for a new tip (so
a burst of cheeses during a download costs one restart), at most every
``tx_delay`` seconds for new transactions.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from twisted.internet.interfaces import IDelayedCall

from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tree import AddResult
from cheesecoin.mining.interfaces import MiningNode, Timer

# The job of a template (cheesecoin.mining.jobs); cli.mine and sim take these names from here.
from cheesecoin.mining.jobs import Job, JobId, get_job_id, job_for, random_start  # noqa: F401


def candidate(
    stack: CheeseStack,
    miner: str,
    transactions: List[dict],
    timestamp: Optional[int] = None,
    note: Optional[str] = None,
) -> dict:
    """A candidate child of the stack's tip (without nonce and smell)."""
    tip = stack.tip
    ts = max(tip.timestamp, int(timestamp if timestamp is not None else stack.clock()))
    info: Dict[str, Any] = {"miner": miner, "transactions": list(transactions)}
    if note is not None:
        info["note"] = note
    return {
        "parent_smell": tip.smell,
        "sequence_number": tip.height + 1,
        "timestamp": ts,
        "bits": stack.next_bits(tip),
        "unit_of_information": info,
    }


def make_template(node: MiningNode, miner_address: str) -> dict:
    """A candidate child of the best tip, without nonce and smell."""
    txs = node.mempool.select(node.network.max_transactions)
    return candidate(node.stack, miner_address, txs, timestamp=int(node.clock()))


def make_job(node: MiningNode, miner_address: str, job_id: JobId) -> Job:
    """A Job on a fresh template of ``node``."""
    return job_for(job_id, make_template(node, miner_address))


class TemplateFeed:
    """Calls ``on_change()`` when a member's mining template changes.

    A new tip: on the next reactor turn (a burst of tip changes is one call).
    New transactions: after ``tx_delay`` seconds (a burst is one call, and a
    steady stream restarts at most once per ``tx_delay``).
    """

    def __init__(
        self, node: MiningNode, on_change: Callable[[], None], clock: Timer, tx_delay: float = 0.5
    ) -> None:
        self.node = node
        self.on_change = on_change
        self.clock = clock
        self.tx_delay = tx_delay
        self._call: Optional[IDelayedCall] = None
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.node.tip_listeners.append(self._tip_changed)
            self.node.tx_listeners.append(self._tx_added)

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.node.tip_listeners.remove(self._tip_changed)
            self.node.tx_listeners.remove(self._tx_added)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tip_changed(self, result: AddResult, source: Any) -> None:
        self._schedule(0)

    def _tx_added(self, tx_id: str, tx: dict, source: Any) -> None:
        self._schedule(self.tx_delay)

    def _schedule(self, delay: float) -> None:
        if self._call is not None and self._call.active():
            if self._call.getTime() <= self.clock.seconds() + delay:
                return
            self._call.cancel()
        self._call = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        if self.started:
            self.on_change()
