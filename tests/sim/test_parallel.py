"""``cheesecoin simulate --workers K``: the members spread over K processes that run
windows of the shortest latency apart (cheesecoin.sim.parallel)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from cheesecoin.cli.simulate import AUTO_WORKERS_FROM, _workers
from cheesecoin.sim.config import ConfigError, SimConfig
from cheesecoin.sim.crosslink import CrossTransport
from cheesecoin.sim.exchange import WorkerFailed, run_workers
from cheesecoin.sim.parallel import ParallelSimulation, run_parallel
from cheesecoin.sim.world import Simulation
from tests.sim.test_scenarios import simulate_cli


def test_a_parallel_run_agrees_and_repeats_exactly_whatever_the_hash_seed() -> None:
    args = ("--members", "40", "--cheeses", "8", "--spacing", "5", "--workers", "2")
    first = simulate_cli(*args, "--seed", "3", hash_seed="1")
    second = simulate_cli(*args, "--seed", "3", hash_seed="2")
    first.pop("wall_seconds"), second.pop("wall_seconds")
    assert first == second
    assert first["workers"] == 2 and first["failures"] == 0
    assert first["agreement"] is True and first["cheeses_on_best"] >= 7
    other = simulate_cli(*args, "--seed", "4")
    assert other["final_tip"] != first["final_tip"], "the seed changes nothing"


def test_two_workers_measure_what_one_process_measures() -> None:
    """Not the same run (the members dial each other in another order, and events
    at one moment run in another order) but the same network: over four seeds the
    figures agree within a few percent (one run alone differs by up to a quarter
    either way at this size, as another seed does: measured over seeds 1-8, mean
    propagation p50 163 ms alone and 155 ms in two workers)."""
    alone, split = [], []
    for seed in (3, 4, 5, 6):
        config = dict(members=60, cheeses=12, spacing=6, seed=seed)
        alone.append(Simulation(SimConfig(**config).check()).run())
        sim, figures = run_parallel(SimConfig(workers=2, **config).check())
        split.append(figures)
        assert figures["failures"] == 0 and figures["cheeses_mined"] == 12
        # The hub gathered every worker's arrivals: each cheese reached every member
        # (seed 3 ends on a tie of two tips of equal work, which two members hold
        # on to; one process alone can end so too, and then says so the same way).
        delays, limits = sim.propagation_samples()
        everyone = figures["cheeses_on_best"] * (60 - 1)
        assert len(delays) == len(limits) == everyone - (0 if figures["agreement"] else 2)

    def mean(runs: list, *keys: str) -> float:
        values = []
        for run in runs:
            for key in keys:
                run = run[key]
            values.append(run)
        return sum(values) / len(values)

    for keys, low, high in (
        (("propagation_ms", "p50"), 0.85, 1.15),
        (("propagation_ms", "p90"), 0.85, 1.15),
        (("propagation_limit_ms", "p50"), 0.9, 1.1),
        (("bytes_per_member",), 0.95, 1.05),
        (("cheeses_on_best",), 0.95, 1.05),
    ):
        assert low < mean(split, *keys) / mean(alone, *keys) < high, keys
    # and the hub's members have links to the other worker's members
    crossing = [
        p.transport
        for m in sim.members
        if sim.owns(m)
        for p in m.manager.peers.values()
        if isinstance(p.transport, CrossTransport)
    ]
    assert crossing and all(not sim.owns(t.remote) for t in crossing)


def test_churn_and_late_joiners_across_three_workers() -> None:
    """Members leave (their connections to other workers' members are aborted: RST
    items) and join late (they sync from members of any worker); three workers
    route through the hub."""
    config = SimConfig(
        members=30, cheeses=10, spacing=8, seed=5, churn=6, late_joiners=3, workers=3
    ).check()
    sim, f = run_parallel(config)
    assert f["agreement"] is True and f["failures"] == 0, f
    assert f["members_joined"] > 30, "nobody joined: nothing was tested"
    assert f["bytes_per_member_by_type"].get("CHEESES", 0) > 0, "the late joiners did not sync"
    assert f["workers"] == 3


@pytest.mark.parametrize(
    "options, needle",
    [
        (dict(workers=0), "--workers must be from 1 to 64"),
        (dict(workers=65), "--workers must be from 1 to 64"),
        (dict(workers=3, members=2), "--workers must not be above --members"),
        (dict(workers=2, latency=(0.0, 50.0)), "shortest --latency above 0"),
        (dict(workers=2, txs_per_cheese=5), "--txs-per-cheese needs the whole network"),
        (dict(workers=2, selfish=0.3), "--selfish needs the whole network"),
        (dict(workers=2, partition=(0.5, 60.0, 120.0)), "--partition needs the whole network"),
    ],
)
def test_what_a_parallel_run_cannot_do_is_refused_in_one_line(options: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        SimConfig(**options).check()


def test_the_cli_refuses_payments_with_workers_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cheesecoin.cli", "simulate", "--workers", "2"]
        + ["--txs-per-cheese", "5", "--members", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--txs-per-cheese needs the whole network" in done.stderr
    assert "Traceback" not in done.stderr


def test_large_runs_take_two_workers_unless_they_need_the_whole_network() -> None:
    def args(**kw: object) -> argparse.Namespace:
        base = dict(workers=None, members=AUTO_WORKERS_FROM, txs_per_cheese=0, partition=None)
        return argparse.Namespace(**dict(base, **kw))

    assert _workers(args(), None) == 2
    assert _workers(args(members=AUTO_WORKERS_FROM - 1), None) == 1
    assert _workers(args(txs_per_cheese=3), None) == 1
    assert _workers(args(partition="50/50@60-120"), None) == 1
    assert _workers(args(), 0.3) == 1
    assert _workers(args(workers=1), None) == 1
    assert _workers(args(workers=3, members=10), None) == 3


def _fails_in_a_spoke(worker: int, channel: object) -> int:
    if worker == 1:
        raise ValueError("boom in worker one")
    channel.exchange([[], []], None)  # type: ignore[attr-defined]
    return 0


def test_a_worker_that_fails_stops_the_run_with_its_error() -> None:
    with pytest.raises(WorkerFailed, match="boom in worker one"):
        run_workers(2, _fails_in_a_spoke)


def _fails_at_the_hub(worker: int, channel: object) -> int:
    if worker == 0:
        raise KeyError("the hub fails")
    channel.exchange([[], []], None)  # type: ignore[attr-defined]
    return 0


def test_spokes_of_a_failed_hub_stop() -> None:
    with pytest.raises(KeyError, match="the hub fails"):
        run_workers(2, _fails_at_the_hub)  # returns only once its spoke has ended


def _drifting(worker: int, channel: object) -> dict:
    config = SimConfig(members=20, cheeses=3, spacing=5, seed=1, workers=2).check()
    sim = ParallelSimulation(config, worker, channel)  # type: ignore[arg-type]
    if worker == 1:  # as if an event had run in one worker only
        sim.clock.callLater(40.5, setattr, sim, "mined", sim.mined + 2)
    return sim.run()


def test_workers_that_drift_apart_stop_the_run_instead_of_measuring_nonsense() -> None:
    with pytest.raises(WorkerFailed, match="drifted apart"):
        run_workers(2, _drifting)


def _dies(worker: int, channel: object) -> int:
    if worker == 1:
        channel.exchange([[], []], None)  # type: ignore[attr-defined]
        os._exit(3)  # as the kernel's OOM killer would end it
    for _ in range(3):
        channel.exchange([[], []], None)  # type: ignore[attr-defined]
    return 0


def test_a_worker_that_vanishes_stops_the_run_with_a_clear_error() -> None:
    with pytest.raises(WorkerFailed, match="worker 1 of the parallel run went away"):
        run_workers(2, _dies)
