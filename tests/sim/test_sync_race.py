"""A late joiner's initial sync over simulated links (issue 17): headers first
it takes bodies from every peer, so more peers make it faster; the version-1
sync takes them from one peer at a time. Simulated seconds, not wall time."""

from __future__ import annotations

from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.syncrace import build_stack, sync_race
from cheesecoin.sim.world import Simulation


def test_headers_first_from_four_peers_beats_one_and_version_1() -> None:
    stack = build_stack(Simulation(SimConfig(members=5, txs_per_cheese=10, seed=3)), 400, 10)
    kw = dict(cheeses=400, txs=10, sources=4, latency=(50, 100), bandwidth=2, seed=3, stack=stack)
    one = sync_race(peers=1, **kw)
    four = sync_race(peers=4, **kw)
    old = sync_race(peers=4, features="none", **kw)
    for run in (one, four, old):
        assert run["synced"] and run["height"] == 400, run
    assert one["peers"] == 1 and four["peers"] == 4
    # About 1.6 MB: one 2 Mbit/s link needs 6.5 s; headers first, four links share it.
    assert one["sync_seconds"] > 2 * four["sync_seconds"], (
        one,
        four,
    )  # (measured: 6.7 s and 2.6 s)
    assert old["sync_seconds"] > 2 * four["sync_seconds"], (old, four)
    assert sync_race(peers=4, **kw)["sync_seconds"] == four["sync_seconds"]  # deterministic
