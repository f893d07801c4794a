"""How fast payments spread in a simulation: ``tx_propagation_ms`` (section 9).

For every payment entered at its home member, the simulated time until each
other member holds it, in its mempool or on its stack (whichever comes
first), beside the latency-weighted shortest path from the home member to
that member (the limit no relay can beat). One sample per (payment, member),
counted once; a member that never gets a payment adds no sample.

A payment is followed until every member that could be reached when it
entered holds it (at most ``MAX_FOLLOWED`` at once, the oldest dropped), so
the check made at each new tip (``holds_any``) looks only at payments still
spreading. Memory: a bytearray of members per followed payment and two
arrays of doubles for the samples (16 bytes a sample).
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Optional, Tuple

from cheesecoin.sim.figures import percentiles

Limits = Dict[int, float]  # member index -> shortest-path seconds from the home member
MAX_FOLLOWED = 20_000  # payments followed at once


class TxFigures:
    """Follows payments from their home member to every other member."""

    def __init__(self, members: int, now: Callable[[], float]) -> None:
        self.members = members
        self.now = now
        # txid -> (entered at, limits, members that hold it, members still to reach)
        self.followed: "OrderedDict[str, Tuple[float, Limits, bytearray, list]]" = OrderedDict()
        self.delays = array("d")
        self.limits = array("d")

    def entered(self, tx_id: str, home: int, limits: Limits) -> None:
        """A payment entered at member ``home`` now; ``limits`` from it to the others."""
        seen = bytearray(max(self.members, home + 1, max(limits, default=0) + 1))
        seen[home] = 1
        to_reach = [sum(1 for m in limits if m != home)]
        if to_reach[0]:
            self.followed[tx_id] = (self.now(), limits, seen, to_reach)
            while len(self.followed) > MAX_FOLLOWED:
                self.followed.popitem(last=False)

    def holds(self, member: int, tx_ids: Iterable[str]) -> None:
        """Member ``member`` holds these payments now (mempool or stack)."""
        for tx_id in tx_ids:
            entry = self.followed.get(tx_id)
            if entry is not None:
                self._reached(tx_id, entry, member)

    def holds_any(self, member: int, holds: Callable[[str], bool]) -> None:
        """After a new tip at ``member``: each followed payment it has not held
        yet and now holds (``holds(txid)``, e.g. its stack's txid index)."""
        for tx_id, entry in list(self.followed.items()):
            seen = entry[2]
            if member < len(seen) and not seen[member] and holds(tx_id):
                self._reached(tx_id, entry, member)

    def _reached(
        self, tx_id: str, entry: Tuple[float, Limits, bytearray, list], member: int
    ) -> None:
        entered_at, limits, seen, to_reach = entry
        if member >= len(seen) or seen[member]:
            return  # joined after it entered, or counted already
        seen[member] = 1
        limit: Optional[float] = limits.get(member)
        if limit is None:
            return  # not reachable when it entered (a partition)
        self.delays.append((self.now() - entered_at) * 1000)
        self.limits.append(limit * 1000)
        to_reach[0] -= 1
        if to_reach[0] <= 0:
            del self.followed[tx_id]

    def summary(self) -> Dict[str, Dict[str, Optional[float]]]:
        """The JSON fields: the delays' percentiles, and the limits' beside them."""
        return {
            "tx_propagation_ms": percentiles(list(self.delays)),
            "tx_propagation_limit_ms": percentiles(list(self.limits)),
        }
