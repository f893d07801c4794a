"""The end of a run: agreement, the best stack and the figures of docs/protocol.md section 9.

``Report`` is a part of ``Simulation`` (cheesecoin.sim.world): it only reads
what the run recorded (arrivals, cheeses found, bytes by type, the pool's
branch) and the members' stacks as they stand.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Dict, List, Optional, Tuple

from cheesecoin.sim.clock import HeapClock
from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.figures import percentiles, stale_rate
from cheesecoin.sim.member import SimMember
from cheesecoin.sim.selfish import SelfishPool
from cheesecoin.sim.txfigures import TxFigures

START = 1_800_000_000.0  # the virtual clock's first second (any fixed time)


class Report:
    """What a finished (or stopped) run says: the figures and the samples behind them."""

    config: SimConfig
    clock: HeapClock
    members: List[SimMember]
    group: Dict[int, int]
    partition_tips: Dict[int, Tuple[int, str]]
    # Per cheese, one slot per member of the run when it was found (index order):
    # when each member had it (nan: never), and in ``found`` (found at, miner,
    # shortest path from the miner in seconds (inf: out of reach), 1 if present).
    arrivals: Dict[str, array]
    found: Dict[str, Tuple[float, int, array, bytes]]
    found_order: List[str]
    bytes_by_type: Counter
    pool: Optional[SelfishPool]
    tx_figures: TxFigures
    reorgs: int
    max_reorg_depth: int
    mined: int
    txs_entered: int
    last_found_at: float
    quiet_at: Optional[float]

    def _note_partition_tips(self) -> None:
        for group in (0, 1):
            members = [m for m in self.members if m.alive and self.group.get(m.index) == group]
            if members:
                best = max(members, key=lambda m: (m.node.stack.work, -m.index))
                self.partition_tips[group] = (best.node.stack.work, best.node.stack.tip.smell)

    def _agreed(self) -> bool:
        tips = {m.node.stack.tip.smell for m in self.members if m.alive}
        return len(tips) == 1

    def best_member(self) -> SimMember:
        """An alive member with the most work (the agreed tip when they agree)."""
        return max(
            (m for m in self.members if m.alive), key=lambda m: (m.node.stack.work, -m.index)
        )

    def on_best(self) -> List[str]:
        """The mined cheeses on the final best stack, in the order found."""
        stack = self.best_member().node.stack
        return [s for s in self.found_order if stack.is_best(s)]

    def propagation_samples(self) -> Tuple[List[float], List[float]]:
        """(delays, limits) in ms, over every cheese of the final best stack and every
        member present when it was found, but its miner: the time until the member
        had it, and the latency-weighted shortest path from the miner to it. A selfish
        pool's cheeses are left out (their delay is the time they were held back)."""
        delays: List[float] = []
        limits: List[float] = []
        held = set(self.pool.found) if self.pool is not None else ()
        for smell in self.on_best():
            if smell in held:
                continue
            found_at, miner, limit, present = self.found[smell]
            for index, arrived in enumerate(self.arrivals[smell]):
                if index == miner or not present[index] or math.isnan(arrived):
                    continue
                delays.append((arrived - found_at) * 1000)
                if limit[index] != math.inf:
                    limits.append(limit[index] * 1000)
        return delays, limits

    def figures(self, wall_seconds: float) -> dict:
        stack = self.best_member().node.stack
        on_best = self.on_best()
        delays, limits = self.propagation_samples()
        everyone = len(self.members)
        total_bytes = sum(self.bytes_by_type.values())
        figures = {
            "members": self.config.members,
            "cheeses_mined": self.mined,
            "cheeses_on_best": len(on_best),
            "stale_rate": stale_rate(self.mined, len(on_best)),
            "propagation_ms": percentiles(delays),
            "propagation_limit_ms": percentiles(limits),
            "agreement": self._agreed(),
            "reorgs": self.reorgs,
            "max_reorg_depth": self.max_reorg_depth,
            "bytes_per_member": round(total_bytes / everyone),
            "bytes_per_member_by_type": {
                k: round(v / everyone) for k, v in sorted(self.bytes_by_type.items())
            },
            "final_tip": stack.tip.smell,
            "final_height": stack.height,
            "quiet_seconds": None
            if self.quiet_at is None
            else round(self.quiet_at - self.last_found_at, 1),
            "transactions": self.txs_entered,
            "members_joined": everyone,
            "simulated_seconds": round(self.clock.now - START, 1),
            "wall_seconds": round(wall_seconds, 1),
            "failures": self.clock.failures,
        }
        if self.config.txs_per_cheese:
            figures.update(self.tx_figures.summary())
        if self.pool is not None:
            figures["selfish"] = self.pool.figures(on_best)
        return figures
