"""Mining templates: the candidate cheese and its job, and when it changes.

``candidate`` builds a candidate child of a stack's tip (docs/protocol.md
s.3: ``next_bits``, the miner's address, timestamp max(now, parent's));
``make_template``/``make_job`` fill it with a member's mempool transactions by
fee. ``TemplateFeed`` tells its owner
when that candidate changes: on the next reactor turn for a new tip (so a
burst of cheeses during a download costs one restart), at most every
``tx_delay`` seconds for new transactions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from cheesecoin.core.cheese import info_hash, preimage_prefix, sha1_hex
from cheesecoin.core.errors import BadMessage
from cheesecoin.core.formats import MAX_INT
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack

# Searches start at a random nonce below this, so that the built-in miner and
# external miners mining the same template do not repeat each other's work.
_START_SPREAD = 2**63


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


def make_template(node: MemberNode, miner_address: str) -> dict:
    """A candidate child of the best tip, without nonce and smell."""
    txs = node.mempool.select(node.network.max_transactions)
    return candidate(node.stack, miner_address, txs, timestamp=int(node.clock()))


@dataclass(frozen=True)
class Job:
    """A candidate cheese to mine and the smell preimage up to its nonce."""

    job_id: Any
    cheese: dict  # the candidate, without nonce and smell
    prefix: str
    bits: int

    @property
    def parent_smell(self) -> str:
        return self.cheese["parent_smell"]

    @property
    def height(self) -> int:
        return self.cheese["sequence_number"]

    def complete(self, nonce: int) -> dict:
        """The candidate with ``nonce`` and its smell (which may miss the target)."""
        return dict(
            self.cheese, nonce=nonce, smell=sha1_hex((self.prefix + str(nonce)).encode("ascii"))
        )

    def work_message(self) -> dict:
        """The WORK message of docs/protocol.md section 6."""
        return {
            "type": "WORK",
            "job": self.job_id,
            "prefix": self.prefix,
            "bits": self.bits,
            "cheese": self.cheese,
        }


def get_job_id(msg: dict) -> Any:
    """The ``job`` field of WORK or SUBMIT: a string or an integer, else BadMessage."""
    job_id = msg.get("job")
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
        raise BadMessage("field 'job' must be a string or an integer")
    if isinstance(job_id, int) and not 0 <= job_id <= MAX_INT:  # section 1's integer range
        raise BadMessage("field 'job' must be an integer from 0 to 2^63 - 1")
    if isinstance(job_id, str) and len(job_id) > 64:
        raise BadMessage("field 'job' must be at most 64 characters")
    return job_id


def job_for(job_id: Any, cheese: dict) -> Job:
    """A Job for a candidate cheese."""
    prefix = preimage_prefix(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        cheese["bits"],
        info_hash(cheese["unit_of_information"]),
    )
    return Job(job_id, cheese, prefix, cheese["bits"])


def make_job(node: MemberNode, miner_address: str, job_id: Any) -> Job:
    """A Job on a fresh template of ``node``."""
    return job_for(job_id, make_template(node, miner_address))


def random_start() -> int:
    """Where a search begins in the nonce space (random, leaving 2^63 nonces after it)."""
    return random.randrange(_START_SPREAD)


class TemplateFeed:
    """Calls ``on_change()`` when a member's mining template changes.

    A new tip: on the next reactor turn (a burst of tip changes is one call).
    New transactions: after ``tx_delay`` seconds (a burst is one call, and a
    steady stream restarts at most once per ``tx_delay``).
    """

    def __init__(
        self, node: Any, on_change: Callable[[], None], clock: Any, tx_delay: float = 0.5
    ) -> None:
        self.node = node
        self.on_change = on_change
        self.clock = clock
        self.tx_delay = tx_delay
        self._call: Any = None
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

    def _tip_changed(self, result: Any, source: Any) -> None:
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
