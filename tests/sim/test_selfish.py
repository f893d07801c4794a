"""The selfish pool (issue 31): Eyal and Sirer's strategy, decision by
decision (no network), and the pool on the real member code: deterministic,
and below its share at alpha = 0.1, above it at 0.4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.cli.simulate import plot_revenue, summary
from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.selfish import (
    ADOPT,
    END,
    IGNORE,
    KEEP,
    PUBLISH_ALL,
    PUBLISH_ONE,
    RACE,
    WIN,
    SelfishStrategy,
    revenue_theory,
)
from cheesecoin.sim.world import Simulation


def leading(by: int, fork: int = 10) -> SelfishStrategy:
    """A strategy whose private branch is ``by`` cheeses ahead of the public stack at ``fork``."""
    s = SelfishStrategy(fork)
    for i in range(1, by + 1):
        assert s.on_pool_cheese(fork + i, f"p{i}") == []
        assert s.last == KEEP
    assert s.lead == by
    return s


class StrategyDecisionTests(SynchronousTestCase):
    """On each honest cheese, what the pool publishes, for every lead."""

    def test_lead_0_adopts_the_public_stack(self) -> None:
        s = leading(0)
        self.assertEqual(s.on_public_cheese(11), [])
        self.assertEqual((s.last, s.lead, s.private_height, s.unpublished), (ADOPT, 0, 11, []))

    def test_lead_1_races_with_its_one_cheese(self) -> None:
        s = leading(1)
        self.assertEqual(s.on_public_cheese(11), ["p1"])
        self.assertEqual(s.last, RACE)
        self.assertTrue(s.racing)
        self.assertEqual((s.lead, s.unpublished), (0, []))

    def test_a_pool_cheese_during_a_race_is_published_at_once_and_wins(self) -> None:
        s = leading(1)
        s.on_public_cheese(11)
        self.assertEqual(s.on_pool_cheese(12, "p2"), ["p2"])
        self.assertEqual(s.last, WIN)
        self.assertFalse(s.racing)
        self.assertEqual((s.public_height, s.lead), (12, 0))

    def test_an_honest_cheese_during_a_race_ends_it_and_the_pool_adopts(self) -> None:
        s = leading(1)
        s.on_public_cheese(11)
        self.assertEqual(
            s.on_public_cheese(12), []
        )  # on the pool's cheese or the honest one: the same
        self.assertEqual(s.last, ADOPT)
        self.assertFalse(s.racing)
        self.assertEqual(s.on_pool_cheese(13, "p3"), [])  # a new private branch, not a win
        self.assertEqual(s.last, KEEP)

    def test_lead_2_publishes_everything_and_is_then_one_ahead_of_nobody(self) -> None:
        s = leading(2)
        self.assertEqual(s.on_public_cheese(11), ["p1", "p2"])
        self.assertEqual(s.last, PUBLISH_ALL)
        self.assertFalse(s.racing)
        self.assertEqual((s.public_height, s.lead, s.unpublished), (12, 0, []))

    def test_lead_above_2_publishes_one_at_a_time_down_to_lead_2(self) -> None:
        s = leading(4)
        self.assertEqual(s.on_public_cheese(11), ["p1"])
        self.assertEqual((s.last, s.lead), (PUBLISH_ONE, 3))
        self.assertEqual(s.on_public_cheese(12), ["p2"])
        self.assertEqual((s.last, s.lead), (PUBLISH_ONE, 2))
        self.assertEqual(s.on_public_cheese(13), ["p3", "p4"])  # lead 2: everything
        self.assertEqual((s.last, s.lead), (PUBLISH_ALL, 0))

    def test_a_public_jump_of_two_publishes_what_two_steps_would(self) -> None:
        s = leading(5)
        self.assertEqual(s.on_public_cheese(12), ["p1", "p2"])
        self.assertEqual(s.last, PUBLISH_ONE)

    def test_a_cheese_that_does_not_lengthen_the_public_stack_changes_nothing(self) -> None:
        s = leading(3)
        self.assertEqual(s.on_public_cheese(10), [])
        self.assertEqual(s.on_public_cheese(9), [])
        self.assertEqual((s.last, s.lead), (IGNORE, 3))

    def test_the_end_of_the_run_publishes_every_private_cheese(self) -> None:
        s = leading(3)
        s.on_public_cheese(11)
        self.assertEqual(s.publish_all(), ["p2", "p3"])
        self.assertEqual(s.last, END)


class RevenueTheoryTests(SynchronousTestCase):
    def test_the_curve_meets_honest_mining_at_the_known_thresholds(self) -> None:
        # Profitable above (1 - gamma) / (3 - 2 gamma): 1/3 at gamma 0, 1/4 at gamma 1/2.
        self.assertAlmostEqual(revenue_theory(1 / 3, 0.0), 1 / 3)
        self.assertAlmostEqual(revenue_theory(1 / 4, 0.5), 1 / 4)
        self.assertLess(revenue_theory(0.1, 0.0), 0.1)
        self.assertGreater(revenue_theory(0.4, 0.0), 0.4)
        self.assertAlmostEqual(revenue_theory(0.5, 0.3), 1.0)  # half the power takes everything


class ModelTests(SynchronousTestCase):
    """The strategy object in Eyal and Sirer's own model (no network) earns R(alpha, gamma)."""

    def test_the_strategy_earns_the_theory_s_revenue_in_the_theory_s_model(self) -> None:
        import random

        from cheesecoin.sim.selfish import model_revenue

        for alpha, gamma in ((0.1, 0.0), (0.25, 0.5), (0.35, 0.0), (0.4, 0.3), (0.45, 1.0)):
            share = model_revenue(alpha, gamma, 200_000, random.Random(1))
            theory = revenue_theory(alpha, gamma)
            self.assertLess(abs(share - theory), 0.01, (alpha, gamma, share, theory))

    def test_the_theory_at_the_measured_alpha_takes_the_pool_s_luck_out(self) -> None:
        # 200 runs of 2,000 cheeses at alpha 0.4, gamma 0.3: share - R(alpha, gamma) has
        # sd 0.028-0.035 over seeds 1-5, share - R(alpha_hat, gamma) 0.008-0.010 (ratio
        # 0.27-0.33), alpha_hat the pool's share of the run's cheeses.
        import random
        import statistics

        from cheesecoin.sim.selfish import model_revenue, model_run

        rng = random.Random(3)
        given, measured = [], []
        for _ in range(200):
            run = model_run(0.4, 0.3, 2000, rng)
            self.assertTrue(0 < run.pool_found < 2000, run)
            given.append(run.share - revenue_theory(0.4, 0.3))
            measured.append(run.share - revenue_theory(run.pool_found / 2000, 0.3))
        ratio = statistics.stdev(measured) / statistics.stdev(given)
        self.assertLess(ratio, 0.5, (statistics.stdev(measured), statistics.stdev(given)))
        self.assertLess(abs(statistics.mean(measured)), 0.005, statistics.mean(measured))
        # model_revenue is model_run's share, from the same draws
        self.assertEqual(
            model_revenue(0.4, 0.3, 500, random.Random(7)),
            model_run(0.4, 0.3, 500, random.Random(7)).share,
        )

    def test_half_the_power_or_more_takes_the_whole_stack(self) -> None:
        # a short run's measured alpha can pass 0.5, where the formula breaks down
        for alpha in (0.5, 0.5550, 0.5552, 0.6, 1.0):
            self.assertEqual(revenue_theory(alpha, 0.3), 1.0)
        self.assertLess(revenue_theory(0.499, 0.3), 1.0)


def run(alpha: float, cheeses: int, seed: int = 1) -> dict:
    return Simulation(
        SimConfig(
            members=10, cheeses=cheeses, spacing=10, seed=seed, selfish=alpha, selfish_peers=4
        )
    ).run()


class SelfishPoolTests(SynchronousTestCase):
    """The pool on the real member code, 10 members."""

    def test_below_a_third_the_pool_earns_less_than_its_share(self) -> None:
        f = run(0.1, 1500)
        pool = f["selfish"]
        self.assertTrue(f["agreement"], f)
        self.assertGreater(pool["pool_found"], 100)
        self.assertLess(pool["revenue_share"], 0.1, pool)
        self.assertGreater(pool["decisions"].get(ADOPT, 0), 0, pool)

    def test_at_0_4_the_pool_earns_more_than_its_share_near_the_theory(self) -> None:
        f = run(0.4, 3000)
        pool = f["selfish"]
        self.assertTrue(f["agreement"], f)
        self.assertGreater(pool["revenue_share"], 0.4, pool)
        self.assertLess(
            abs(pool["revenue_share"] - pool["revenue_theory"]), 0.08, pool
        )  # (noise: 0.03)
        for decision in (RACE, PUBLISH_ALL, PUBLISH_ONE, WIN):
            self.assertGreater(pool["decisions"].get(decision, 0), 0, (decision, pool))
        self.assertGreater(pool["tie_cheeses"], 0, pool)
        self.assertEqual(pool["publish_failed"], 0, pool)
        self.assertTrue(0 <= pool["gamma_measured"] <= 1)

    def test_churn_never_takes_the_pool_away(self) -> None:
        # (with seed 1, a member drawn from all of them would be the pool: checked)
        sim = Simulation(
            SimConfig(
                members=6, cheeses=40, spacing=5, seed=1, churn=10, selfish=0.3, selfish_peers=3
            )
        )
        f = sim.run()
        self.assertGreater(f["members_joined"], 10)  # many left and joined
        assert sim.pool is not None
        self.assertTrue(sim.pool.member.alive)
        self.assertIsNone(sim.pool.member.left_at)

    def test_the_pool_connects_to_its_k_members_only(self) -> None:
        sim = Simulation(
            SimConfig(members=12, cheeses=5, spacing=5, seed=2, selfish=0.3, selfish_peers=3)
        )
        sim.run()
        assert sim.pool is not None
        manager = sim.pool.member.manager
        self.assertEqual(len(manager.peers), 3)
        self.assertTrue(all(p.outbound for p in manager.peers.values()))


class SelfishDeterminismTests(SynchronousTestCase):
    def cli(self, hash_seed: str, *args: str) -> dict:
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-m", "cheesecoin.cli", "simulate", "--quiet", "--json", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def test_the_same_arguments_give_the_same_figures_with_a_pool(self) -> None:
        args = (
            "--members",
            "15",
            "--cheeses",
            "80",
            "--spacing",
            "5",
            "--txs-per-cheese",
            "3",
            "--selfish",
            "0.35",
            "--selfish-peers",
            "5",
            "--seed",
            "4",
        )
        first, second = self.cli("1", *args), self.cli("2", *args)
        self.assertIn("selfish", first)
        self.assertEqual(
            set(first["selfish"]) >= {"alpha", "gamma_measured", "revenue_share", "revenue_theory"},
            True,
        )
        pool = first["selfish"]
        # alpha measured like gamma: the pool's share of every cheese found in the run
        self.assertEqual(pool["alpha_measured"], round(pool["pool_found"] / 80, 4), pool)
        self.assertEqual(first["cheeses_mined"], 80)
        gamma = pool["gamma_measured"]
        self.assertAlmostEqual(
            pool["revenue_theory_measured"], revenue_theory(pool["alpha_measured"], gamma), 3
        )
        self.assertAlmostEqual(pool["revenue_theory"], revenue_theory(0.35, gamma), 3)
        line = summary(first).splitlines()[-1]
        self.assertIn(f"{pool['revenue_theory_measured']:.4f} at measured alpha", line)
        self.assertIn(f"theory {pool['revenue_theory']:.4f} at measured gamma", line)
        first.pop("wall_seconds"), second.pop("wall_seconds")
        self.assertEqual(first, second)
        self.assertGreater(first["selfish"]["pool_found"], 0)
        several = self.cli(
            "1", *args[:-6], "--selfish", "0.2,0.35", "--selfish-peers", "5", "--seed", "4"
        )
        self.assertEqual([f["selfish"]["alpha"] for f in several], [0.2, 0.35])
        several[1].pop("wall_seconds")
        self.assertEqual(several[1], first)  # each run of a sweep is the run alone


class RevenuePlotTests(SynchronousTestCase):
    def test_without_matplotlib_the_plot_is_a_one_line_error_before_any_run(self) -> None:
        import importlib.util
        import io

        from cheesecoin.cli.main import main

        self.patch(importlib.util, "find_spec", lambda name, *a: None)
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.patch(Simulation, "run", lambda *a, **kw: self.fail("a run started"))
        code = main(["simulate", "--members", "10", "--selfish", "0.2,0.3", "--plot", "x.png"])
        self.assertNotEqual(code, 0)
        self.assertIn("--plot needs matplotlib", err.getvalue())
        self.assertEqual(err.getvalue().count("\n"), 1, err.getvalue())

    def test_the_summary_of_older_figures_without_alpha_measured(self) -> None:
        f = {
            "members": 10,
            "members_joined": 10,
            "cheeses_mined": 80,
            "cheeses_on_best": 78,
            "stale_rate": 0.025,
            "propagation_ms": {"p50": 1, "p90": 2, "p99": 3, "max": 4},
            "propagation_limit_ms": {"p50": 1, "p90": 2, "p99": 3, "max": 4},
            "agreement": True,
            "quiet_seconds": 2,
            "reorgs": 0,
            "max_reorg_depth": 0,
            "bytes_per_member": 100,
            "simulated_seconds": 800,
            "wall_seconds": 1.0,
            "selfish": {
                "alpha": 0.3,
                "gamma_measured": 0.25,
                "revenue_share": 0.31,
                "revenue_theory": 0.3,
                "tie_cheeses": 4,
            },
        }
        line = summary(f).splitlines()[-1]
        self.assertIn("theory 0.3000 at measured gamma 0.2500, 4 honest", line)
        self.assertNotIn("measured alpha", line)

    def test_the_plot_draws_the_theory_at_the_measured_alpha_too(self) -> None:
        import types

        drawn: list = []

        class Axes:
            def plot(self, xs: list, ys: list, *style: str, **kw: object) -> None:
                drawn.append((list(xs), list(ys), style, kw.get("label")))

            def __getattr__(self, name: str) -> object:
                return lambda *a, **kw: None  # labels, limits, grid, legend

        class Figure:
            def savefig(self, path: str, **kw: object) -> None:
                drawn.append(("saved", path))

        pyplot = types.ModuleType("matplotlib.pyplot")
        pyplot.subplots = lambda **kw: (Figure(), Axes())  # type: ignore[attr-defined]
        pyplot.close = lambda fig: None  # type: ignore[attr-defined]
        matplotlib = types.ModuleType("matplotlib")
        matplotlib.use = lambda backend: None  # type: ignore[attr-defined]
        matplotlib.pyplot = pyplot  # type: ignore[attr-defined]

        def restore(name: str, old: Optional[types.ModuleType]) -> None:
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old

        for name, module in (("matplotlib", matplotlib), ("matplotlib.pyplot", pyplot)):
            self.addCleanup(restore, name, sys.modules.get(name))
            sys.modules[name] = module

        def run_of(alpha: float, **more: float) -> dict:
            pool = {"alpha": alpha, "revenue_share": alpha + 0.05, "revenue_theory": alpha + 0.02}
            pool.update(more)
            return {"members": 10, "cheeses_mined": 2000, "selfish": pool}

        runs = [
            run_of(0.4, alpha_measured=0.41, revenue_theory_measured=0.47),
            run_of(0.2),  # older figures: no theory at the measured alpha
            run_of(0.3, alpha_measured=0.29, revenue_theory_measured=0.28),
        ]
        plot_revenue({"40 pool peers": runs}, "revenue.png")
        series = {d[3]: d for d in drawn if len(d) == 4 and d[3] and d[3].startswith("40")}
        at_measured = series["40 pool peers: theory at the measured alpha and gamma"]
        self.assertEqual(at_measured[:2], ([0.3, 0.4], [0.28, 0.47]))
        self.assertNotIn(at_measured[2], [series[k][2] for k in series if k != at_measured[3]])
        given = series["40 pool peers: theory at the measured gamma"]
        self.assertEqual(given[:2], ([0.2, 0.3, 0.4], [a + 0.02 for a in (0.2, 0.3, 0.4)]))
        shares = series["40 pool peers: measured"]
        self.assertEqual(shares[0], [0.2, 0.3, 0.4])
        self.assertIn(("saved", "revenue.png"), drawn)
