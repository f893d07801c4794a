"""Issue 31: can 2,000 cheeses tell a selfish pool's revenue within +-0.03 of theory?

For each alpha (default 0.35 and 0.4) it runs the simulator (50 members,
``--selfish-peers 40``, 2,000 cheeses, 10 s spacing, 20-150 ms, seeds 1-5;
each run in its own process) and reports per seed the pool's cheeses, alpha
measured (the pool's share of every cheese found), gamma measured, its
revenue share, and two theories with the share's difference from each:
R(alpha, gamma measured) and R(alpha measured, gamma measured); then for
each difference the mean, the sample standard deviation over the seeds and
how many seeds are within +-0.03. Beside it, the resolution of that many
cheeses in Eyal and Sirer's own model (``cheesecoin.sim.selfish.model_run``,
no network, the same strategy object), for both comparisons: the standard
deviation of share - R over ``--model-runs`` runs at the seeds' mean gamma,
the share of those runs within +-0.03, and how many cheeses would put 95% of
the runs within +-0.03 (1.96 standard deviations, the deviation falling as
one over the root of the cheeses).

    .venv/bin/python bench/bench_sim_selfish.py [--seeds 1-5] [--alphas 0.35,0.4]
        [--cheeses 2000] [--model-only]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import run_in_tree  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINDOW = 0.03  # the goal: within +-0.03 of R(alpha, gamma measured)

_CHILD = """
import json, sys
from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.world import Simulation
alpha, seed = float(sys.argv[1]), int(sys.argv[2])
cheeses, peers = int(sys.argv[3]), int(sys.argv[4])
config = SimConfig(
    members=50, cheeses=cheeses, spacing=10, latency=(20, 150), seed=seed,
    selfish=alpha, selfish_peers=peers,
)
f = Simulation(config).run()
print(json.dumps({"selfish": f["selfish"], "agreement": f["agreement"],
                  "wall_seconds": f["wall_seconds"], "cheeses_mined": f["cheeses_mined"]}))
"""


def simulate(alpha: float, seed: int, cheeses: int, peers: int) -> Dict[str, Any]:
    args = (str(alpha), str(seed), str(cheeses), str(peers))
    out = run_in_tree(ROOT, _CHILD, *args, timeout=3600)
    return json.loads(out.strip().splitlines()[-1])


def spread(diffs: List[float], cheeses: int) -> Dict[str, float]:
    """Mean, sample sd, share within +-WINDOW of a model's differences from a theory."""
    sd = statistics.stdev(diffs)
    needed = cheeses * (sd / (WINDOW / 1.96)) ** 2
    return {
        "mean": statistics.mean(diffs),
        "sd": sd,
        "within": sum(abs(d) <= WINDOW for d in diffs) / len(diffs),
        "cheeses_for_95": math.ceil(needed / 100) * 100,
    }


def model_spread(alpha: float, gamma: float, cheeses: int, runs: int) -> Dict[str, Any]:
    """The spread of share - R over ``runs`` runs of ``cheeses`` in the model without a
    network: ``"given"`` against R(alpha, gamma), ``"measured"`` against R(alpha_hat,
    gamma) with alpha_hat the pool's share of the run's cheeses."""
    from cheesecoin.sim.selfish import model_run, revenue_theory

    rng = random.Random(2)
    theory = revenue_theory(alpha, gamma)
    given: List[float] = []
    measured: List[float] = []
    for _ in range(runs):
        run = model_run(alpha, gamma, cheeses, rng)
        given.append(run.share - theory)
        measured.append(run.share - revenue_theory(run.pool_found / cheeses, gamma))
    return {
        "theory": theory,
        "given": spread(given, cheeses),
        "measured": spread(measured, cheeses),
    }


def alpha_hat(f: Dict[str, Any]) -> Optional[float]:
    """The pool's measured alpha (older JSON without the key: from its counts, if there)."""
    pool = f["selfish"]
    if pool.get("alpha_measured") is not None:
        return float(pool["alpha_measured"])
    found, mined = pool.get("pool_found"), f.get("cheeses_mined")
    return found / mined if found is not None and mined else None


def summarise(alpha: float, name: str, diffs: List[float]) -> str:
    inside = sum(abs(d) <= WINDOW for d in diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    mean = statistics.mean(diffs) if diffs else float("nan")
    return (
        f"alpha {alpha}: share - {name} mean {mean:+.4f}, sample sd {sd:.4f} over "
        f"{len(diffs)} seeds, {inside} of {len(diffs)} within +-{WINDOW}"
    )


def seeds_of(text: str) -> List[int]:
    if "-" in text:
        low, high = text.split("-", 1)
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1-5")
    p.add_argument("--alphas", default="0.35,0.4")
    p.add_argument("--cheeses", type=int, default=2000)
    p.add_argument("--peers", type=int, default=40, help="--selfish-peers (default 40)")
    p.add_argument("--model-runs", type=int, default=300)
    p.add_argument("--model-only", action="store_true", help="the model's spread only")
    p.add_argument("--model-gamma", type=float, default=0.3, help="gamma with --model-only")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from cheesecoin.sim.selfish import revenue_theory

    for alpha in [float(a) for a in args.alphas.split(",")]:
        gammas: List[float] = []
        diffs: List[float] = []
        diffs_hat: List[float] = []
        if not args.model_only:
            print(f"alpha {alpha}, {args.cheeses} cheeses, --selfish-peers {args.peers}:")
            print(
                "| seed | pool found | alpha measured | gamma | share | R(a, g) | share - R "
                "| R(a measured, g) | share - R(a measured) | agreement | wall s |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for seed in seeds_of(args.seeds):
                f = simulate(alpha, seed, args.cheeses, args.peers)
                pool = f["selfish"]
                gamma, share = pool["gamma_measured"], pool["revenue_share"]
                theory = pool["revenue_theory"]  # R(alpha, gamma measured), as the JSON says
                gammas.append(gamma)
                diffs.append(share - theory)
                a_hat = alpha_hat(f)
                r_hat = pool.get("revenue_theory_measured")
                if r_hat is None and a_hat is not None:
                    r_hat = revenue_theory(a_hat, gamma)
                measured = ["?", "?", "?"]  # alpha measured, R at it, share - R at it
                if a_hat is not None and r_hat is not None:
                    diffs_hat.append(share - r_hat)
                    measured = [f"{a_hat:.4f}", f"{r_hat:.4f}", f"{share - r_hat:+.4f}"]
                cells = [str(seed), str(pool.get("pool_found", "?")), measured[0]]
                cells += [f"{gamma:.3f}", f"{share:.4f}", f"{theory:.4f}", f"{share - theory:+.4f}"]
                cells += [measured[1], measured[2], str(f["agreement"]), str(f["wall_seconds"])]
                print("| " + " | ".join(cells) + " |", flush=True)
            print(summarise(alpha, "R(alpha, gamma)", diffs))
            if diffs_hat:
                print(summarise(alpha, "R(alpha measured, gamma)", diffs_hat))
        gamma = statistics.mean(gammas) if gammas else args.model_gamma
        m = model_spread(alpha, gamma, args.cheeses, args.model_runs)
        for key, name in (("given", "R(alpha, gamma)"), ("measured", "R(alpha_hat, gamma)")):
            s = m[key]
            print(
                f"alpha {alpha}: the model at gamma {gamma:.3f}, {args.model_runs} runs of "
                f"{args.cheeses} cheeses, share - {name}: mean {s['mean']:+.4f}, "
                f"sd {s['sd']:.4f}, {s['within']:.0%} of runs within +-{WINDOW}; "
                f"95% within +-{WINDOW} needs about {s['cheeses_for_95']} cheeses",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
