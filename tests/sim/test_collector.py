"""The cyclic garbage collector's schedule during a simulation (cheesecoin.sim.collector)."""

from __future__ import annotations

import gc
import weakref
from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.sim.collector import THRESHOLDS, RunCollector


class Node:
    """A cycle's member, whose end we can watch."""

    def __init__(self) -> None:
        self.other: Any = self


def a_cycle() -> "weakref.ref[Node]":
    node = Node()
    return weakref.ref(node)  # only the cycle holds it now


class RunCollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.before = (gc.get_threshold(), gc.isenabled())
        self.addCleanup(self.restore)

    def restore(self) -> None:
        gc.unfreeze()
        gc.set_threshold(*self.before[0])
        if self.before[1]:
            gc.enable()
        else:
            gc.disable()

    def test_automatic_during_the_warm_up_then_one_collection_every_period(self) -> None:
        gc.enable()
        collections: List[int] = []

        def count(phase: str, info: dict) -> None:
            if phase == "stop":
                collections.append(info["generation"])

        with RunCollector(warmup=30.0, every=600.0) as collector:
            assert gc.get_threshold() == THRESHOLDS and gc.isenabled()
            collector.tick(29.0)
            assert gc.isenabled() and collector.collections == 0
            gc.callbacks.append(count)
            try:
                collector.tick(30.0)  # the warm-up's end: a full collection, then off
                assert not gc.isenabled() and collections == [2]
                cycle = a_cycle()
                collector.tick(629.0)
                assert cycle() is not None and collector.collections == 1
                collector.tick(630.0)  # one period on: the cycle made meanwhile is freed
                assert cycle() is None and collections == [2, 2]
            finally:
                gc.callbacks.remove(count)
        # Afterwards the collector is as it was.
        assert (gc.get_threshold(), gc.isenabled()) == self.before[0:1] + (True,)
        assert gc.get_freeze_count() == 0

    def test_a_collector_that_was_off_stays_off(self) -> None:
        gc.disable()
        with RunCollector(warmup=0.0) as collector:
            collector.tick(0.0)
        assert not gc.isenabled()
