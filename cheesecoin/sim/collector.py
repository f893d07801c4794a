"""The cyclic garbage collector during a run.

A run at thousands of members holds millions of small objects for its whole
length (the members' stacks, connections and tables) and, once the members
have found each other, makes almost no cycles: at 2,000 members over 30
cheeses the collector's young passes after the warm-up took 0.79 s (about
110 ms each) and found nothing unreachable; with churn, late joiners and
payments (300 members, 40 cheeses) 844 objects. In a parallel run each pass
also holds up the other workers at the end of the window it falls in.

So the automatic collector runs during the warm-up (members finding each
other: dials, refusals and their failures make most of a run's cycles); at
its end one full collection freezes what survives (``gc.freeze``: never
looked at again), and from then on the automatic collector is off: every
``EVERY`` simulated seconds one collection frees what cycles there are and
freezes the rest. Every worker of a parallel run collects at the same
simulated second. A cycle that becomes garbage after it was frozen (a
connection closed long after it was made, with churn) is not freed during
the run; nor was it before once it had aged into the oldest generation,
which was never collected after the warm-up.
"""

from __future__ import annotations

import gc
from types import TracebackType
from typing import Optional, Tuple, Type

EVERY = 600.0  # simulated seconds between collections after the warm-up
THRESHOLDS = (100_000, 50, 100)  # during the warm-up: young passes only now and then


class RunCollector:
    """The collector's schedule for one run (a context manager; ``tick`` each
    simulated second with the seconds since the start)."""

    def __init__(self, warmup: float, every: float = EVERY) -> None:
        self.every = every
        self.collections = 0
        self._next = warmup
        self._saved: Optional[Tuple[Tuple[int, int, int], bool]] = None

    def __enter__(self) -> "RunCollector":
        self._saved = (gc.get_threshold(), gc.isenabled())
        gc.set_threshold(*THRESHOLDS)
        return self

    def tick(self, elapsed: float) -> None:
        """``elapsed`` simulated seconds since the start: collect and freeze when due."""
        if elapsed < self._next:
            return
        gc.disable()
        gc.collect()
        gc.freeze()
        self.collections += 1
        self._next = elapsed + self.every

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        gc.unfreeze()
        if self._saved is not None:
            thresholds, enabled = self._saved
            gc.set_threshold(*thresholds)
            if enabled:
                gc.enable()
