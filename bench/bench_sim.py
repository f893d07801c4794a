"""Benchmark of ``cheesecoin simulate``: how its cost grows with the network.

Runs the simulator at 100, 300 and 1,000 members (each in its own process, so
that its peak RSS is its own), 10 s spacing, 20-150 ms latency, 10 Mbit/s
links, and reports for each: the wall time, the wall time per member per
simulated hour against the 100-member run's (the limit measured in the same
run: a ratio near 1 is linear growth), the peak RSS per member, and the
propagation p50/p90 against the latency-weighted shortest-path limit of the
same run. Then a late joiner's initial sync (``cheesecoin.sim.syncrace``):
headers first from 8 peers against 1 peer, and the version-1 sync from 8.
Then (issue 29) the three relay settings (``--features all``, ``rev2``,
``none``) at 100 members: bytes per payment and propagation against each other.
Then (issue 31) propagation at 500 payments a cheese without and with
simulated validation time (``--verify-us``), and a selfish pool's revenue
share against Eyal and Sirer's theory for alpha from 0.1 to 0.45 at two
``--selfish-peers`` settings.

    .venv/bin/python bench/bench_sim.py [--quick]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import figure, print_table, run_in_tree  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [(100, 120), (300, 60), (1000, 30)]  # (members, cheeses)
QUICK_SIZES = [(100, 40), (300, 20), (1000, 10)]

_CHILD = """
import json, resource, sys
from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.world import Simulation
members, cheeses = int(sys.argv[1]), int(sys.argv[2])
config = SimConfig(
    members=members, cheeses=cheeses, spacing=10, latency=(20, 150), bandwidth=10, seed=1
)
f = Simulation(config).run()
f["max_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(f))
"""


def _run(members: int, cheeses: int) -> Dict[str, Any]:
    out = run_in_tree(ROOT, _CHILD, str(members), str(cheeses), timeout=1800)
    return json.loads(out.strip().splitlines()[-1])


def run(quick: bool = False) -> List[Dict[str, Any]]:
    figures: List[Dict[str, Any]] = []
    base = None
    for members, cheeses in QUICK_SIZES if quick else SIZES:
        f = _run(members, cheeses)
        print(
            f"bench_sim: {members} members, {cheeses} cheeses: {f['wall_seconds']} s",
            file=sys.stderr,
        )
        hours = f["simulated_seconds"] / 3600
        per = f["wall_seconds"] / (members * hours)  # wall seconds per member per simulated hour
        if base is None:
            base = per
        label = f"simulate {members} members x {cheeses} cheeses"
        figures.append(figure(f"{label}: wall time", f["wall_seconds"], "s"))
        figures.append(
            figure(
                f"{label}: wall s per member per simulated hour",
                per,
                "s",
                base,
                "the same at 100 members",
                goal="<= 1.5 (linear growth)" if members > 100 else "",
            )
        )
        figures.append(
            figure(f"{label}: peak RSS per member", f["max_rss_kib"] / 1024 / members, "MiB")
        )
        for q in ("p50", "p90"):
            figures.append(
                figure(
                    f"{label}: propagation {q}",
                    f["propagation_ms"][q],
                    "ms",
                    f["propagation_limit_ms"][q],
                    f"shortest-path limit {q}",
                )
            )
        figures.append(
            figure(
                f"{label}: stale rate",
                f["stale_rate"],
                "",
                goal="agreement" if f["agreement"] else "NO agreement",
            )
        )
    figures.extend(sync_figures(quick))
    figures.extend(relay_figures(quick))
    figures.extend(cpu_figures(quick))
    figures.extend(selfish_figures(quick))
    return figures


def _simulate(config: Any) -> Dict[str, Any]:
    from cheesecoin.sim.world import Simulation

    return Simulation(config).run()


def _busy_network(cheeses: int, **options: Any) -> Dict[str, Any]:
    """100 members, 500 payments a mean spacing, 20-150 ms, 10 Mbit/s, seed 1:
    the network the relay and CPU figures compare settings in."""
    from cheesecoin.sim.config import SimConfig

    config = SimConfig(
        members=100,
        cheeses=cheeses,
        txs_per_cheese=500,
        latency=(20, 150),
        bandwidth=10,
        seed=1,
        **options,
    )
    return _simulate(config)


def relay_figures(quick: bool = False) -> List[Dict[str, Any]]:
    """Issue 29: the three relay settings (``--features all``, ``rev2``, ``none``)
    at 100 members, 500 payments a mean spacing, the same seed: bytes per member
    per payment of ``all`` and ``rev2`` against ``none`` in the same run, and each
    one's cheese propagation p90 against its limit and payment p90."""
    cheeses = 4 if quick else 12
    runs: Dict[str, Dict[str, Any]] = {}
    for features in ("none", "rev2", "all"):
        runs[features] = f = _busy_network(cheeses, features=features)
        print(
            f"bench_sim: --features {features}: {f['bytes_per_member']} B a member, "
            f"{f['transactions']} payments, propagation {f['propagation_ms']}",
            file=sys.stderr,
        )

    def per_payment(f: Dict[str, Any]) -> float:
        return f["bytes_per_member"] / max(1, f["transactions"])

    label = f"relay, 100 members x {cheeses} cheeses, 500 payments a spacing"
    out = []
    for features, goal in (("all", "<= 0.20"), ("rev2", "")):
        out.append(
            figure(
                f"{label}: bytes per member per payment, --features {features}",
                per_payment(runs[features]),
                "B",
                per_payment(runs["none"]),
                "the same with --features none",
                goal=goal,
            )
        )
    for features in ("all", "rev2", "none"):
        f = runs[features]
        out.append(
            figure(
                f"{label}: cheese propagation p90, --features {features}",
                f["propagation_ms"]["p90"],
                "ms",
                f["propagation_limit_ms"]["p90"],
                "shortest-path limit p90",
                goal="<= 1.5" if features == "all" else "",
            )
        )
        out.append(
            figure(
                f"{label}: payment propagation p90, --features {features}",
                f["tx_propagation_ms"]["p90"],
                "ms",
                goal="<= 2000 ms" if features == "all" else "",
            )
        )
    return out


def cpu_figures(quick: bool = False) -> List[Dict[str, Any]]:
    """Propagation of cheeses of 500 payments, 100 members, with no CPU time and
    with the default --verify-us (the members' validation at every hop)."""
    from cheesecoin.sim.config import VERIFY_US

    cheeses = 4 if quick else 10
    out = []
    runs = {}
    for verify in (0.0, VERIFY_US):
        runs[verify] = f = _busy_network(cheeses, verify_us=verify)
        print(
            f"bench_sim: 500 tx/cheese, --verify-us {verify:g}: {f['propagation_ms']}",
            file=sys.stderr,
        )
    label = f"simulate 100 members x {cheeses} cheeses x 500 tx"
    for q in ("p50", "p90"):
        out.append(
            figure(
                f"{label}: propagation {q}, --verify-us {VERIFY_US:g}",
                runs[VERIFY_US]["propagation_ms"][q],
                "ms",
                runs[0.0]["propagation_ms"][q],
                "--verify-us 0",
            )
        )
    return out


SELFISH_ALPHAS = (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45)


def selfish_figures(quick: bool = False) -> List[Dict[str, Any]]:
    """A selfish pool (50 members) at each alpha and two --selfish-peers settings:
    its revenue share against R(alpha, gamma) at the gamma it measured."""
    from cheesecoin.sim.config import SimConfig

    cheeses = 300 if quick else 2000
    out = []
    for peers in (4, 40):
        for alpha in SELFISH_ALPHAS:
            f = _simulate(
                SimConfig(
                    members=50,
                    cheeses=cheeses,
                    spacing=10,
                    latency=(20, 150),
                    seed=1,
                    selfish=alpha,
                    selfish_peers=peers,
                )
            )
            pool = f["selfish"]
            print(f"bench_sim: selfish {alpha} x {peers} peers: {pool}", file=sys.stderr)
            name = f"selfish pool alpha {alpha}, {peers} peers, {cheeses} cheeses: revenue share"
            out.append(
                figure(
                    name,
                    pool["revenue_share"],
                    "",
                    pool["revenue_theory"],
                    f"R(alpha, gamma {pool['gamma_measured']:.3f})",
                )
            )
            if "revenue_theory_measured" in pool:  # alpha measured from the run, like gamma
                out.append(
                    figure(
                        name + ", against R at the measured alpha",
                        pool["revenue_share"],
                        "",
                        pool["revenue_theory_measured"],
                        f"R(alpha {pool['alpha_measured']:.3f} measured, "
                        f"gamma {pool['gamma_measured']:.3f})",
                    )
                )
    return out


def sync_figures(quick: bool = False) -> List[Dict[str, Any]]:
    """Issue 17: a late joiner syncs C cheeses x 25 payments over 50-100 ms, 10 Mbit/s
    links from 8 members: headers first from all 8 against the same from one peer,
    and the version-1 sync (features none) from 8."""
    from cheesecoin.sim.syncrace import sync_race

    cheeses = 500 if quick else 2000
    runs = {}
    for name, peers, features in (
        ("1 peer", 1, "all"),
        ("8 peers", 8, "all"),
        ("8 peers, features none", 8, "none"),
    ):
        runs[name] = sync_race(
            cheeses=cheeses,
            txs=25,
            sources=8,
            peers=peers,
            latency=(50, 100),
            bandwidth=10,
            features=features,
        )
        print(f"bench_sim: sync race {name}: {runs[name]}", file=sys.stderr)
    one = runs["1 peer"]["sync_seconds"]
    label = f"simulated sync of {cheeses} cheeses x 25 tx, 50-100 ms, 10 Mbit/s"
    return [
        figure(f"{label}, headers first from 1 peer", one, "s (simulated)"),
        figure(
            f"{label}, headers first from 8 peers: speed-up",
            one / runs["8 peers"]["sync_seconds"],
            "x",
            1.0,
            "from 1 peer",
            goal=">= 4" if not quick else "",
        ),  # (#17's goal is for 2,000 cheeses; at 500 the
        # header round trips and the start are a larger share)
        figure(
            f"{label}, version 1 from 8 peers: speed-up",
            one / runs["8 peers, features none"]["sync_seconds"],
            "x",
            1.0,
            "from 1 peer",
        ),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
