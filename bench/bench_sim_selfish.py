"""Issue 31: can 2,000 cheeses tell a selfish pool's revenue within +-0.03 of theory?

For each alpha (default 0.35 and 0.4) it runs the simulator (50 members,
``--selfish-peers 40``, 2,000 cheeses, 10 s spacing, 20-150 ms, seeds 1-5;
each run in its own process) and reports per seed the pool's cheeses, gamma
measured, its revenue share, R(alpha, gamma measured) and the difference;
then the mean and the sample standard deviation of the differences over the
seeds. Beside it, the resolution of that many cheeses in Eyal and Sirer's
own model (``cheesecoin.sim.selfish.model_revenue``, no network, the same
strategy object): the standard deviation of the share over ``--model-runs``
runs at the seeds' mean gamma, the share of those runs within +-0.03 of R,
and how many cheeses would put 95% of the runs within +-0.03 (1.96 standard
deviations, the deviation falling as one over the root of the cheeses).

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
from typing import Any, Dict, List

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
                  "wall_seconds": f["wall_seconds"]}))
"""


def simulate(alpha: float, seed: int, cheeses: int, peers: int) -> Dict[str, Any]:
    args = (str(alpha), str(seed), str(cheeses), str(peers))
    out = run_in_tree(ROOT, _CHILD, *args, timeout=3600)
    return json.loads(out.strip().splitlines()[-1])


def model_spread(alpha: float, gamma: float, cheeses: int, runs: int) -> Dict[str, float]:
    """The share's spread over ``runs`` runs of ``cheeses`` in the model without a network."""
    from cheesecoin.sim.selfish import model_revenue, revenue_theory

    rng = random.Random(2)
    theory = revenue_theory(alpha, gamma)
    shares = [model_revenue(alpha, gamma, cheeses, rng) for _ in range(runs)]
    sd = statistics.stdev(shares)
    needed = cheeses * (sd / (WINDOW / 1.96)) ** 2
    return {
        "theory": theory,
        "mean_minus_theory": statistics.mean(shares) - theory,
        "sd": sd,
        "within": sum(abs(s - theory) <= WINDOW for s in shares) / runs,
        "cheeses_for_95": math.ceil(needed / 100) * 100,
    }


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
    for alpha in [float(a) for a in args.alphas.split(",")]:
        gammas: List[float] = []
        diffs: List[float] = []
        if not args.model_only:
            print(f"alpha {alpha}, {args.cheeses} cheeses, --selfish-peers {args.peers}:")
            print("| seed | pool found | gamma | share | R | share - R | agreement | wall s |")
            print("|---|---|---|---|---|---|---|---|")
            for seed in seeds_of(args.seeds):
                f = simulate(alpha, seed, args.cheeses, args.peers)
                pool = f["selfish"]
                gamma, share = pool["gamma_measured"], pool["revenue_share"]
                theory = pool["revenue_theory"]  # R(alpha, gamma measured), as the JSON says
                gammas.append(gamma)
                diffs.append(share - theory)
                print(
                    f"| {seed} | {pool.get('pool_found', '?')} | {gamma:.3f} | {share:.4f} "
                    f"| {theory:.4f} | {share - theory:+.4f} | {f['agreement']} "
                    f"| {f['wall_seconds']} |",
                    flush=True,
                )
            inside = sum(abs(d) <= WINDOW for d in diffs)
            sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            print(
                f"alpha {alpha}: share - R mean {statistics.mean(diffs):+.4f}, "
                f"sample sd {sd:.4f} over {len(diffs)} seeds, "
                f"{inside} of {len(diffs)} within +-{WINDOW}"
            )
        gamma = statistics.mean(gammas) if gammas else args.model_gamma
        m = model_spread(alpha, gamma, args.cheeses, args.model_runs)
        print(
            f"alpha {alpha}: the model at gamma {gamma:.3f}, {args.model_runs} runs of "
            f"{args.cheeses} cheeses: R {m['theory']:.4f}, mean - R "
            f"{m['mean_minus_theory']:+.4f}, sd {m['sd']:.4f}, "
            f"{m['within']:.0%} of runs within +-{WINDOW}; "
            f"95% within +-{WINDOW} needs about {m['cheeses_for_95']} cheeses",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
