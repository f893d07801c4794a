"""``cheesecoin simulate``: N real members on a virtual clock (docs/protocol.md section 9).

Prints a progress line on stderr every few seconds of wall time on long runs,
a summary for people on stdout, and with ``--json`` the figures as the last
line of stdout. ``--plot FILE.png`` draws the propagation CDF against its
limit (needs matplotlib: ``pip install 'cheesecoin[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cheesecoin.cli.errors import USAGE, CliError

PROGRESS_EVERY = 10.0  # wall seconds between progress lines


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run many real members on a virtual clock and measure the network",
        description="Run N members (the real member code, in-memory stacks) in this process on a virtual "
        "clock, over simulated links (one-way latency drawn per pair from MIN-MAX ms, each direction at the "
        "given bandwidth), with miners finding cheeses at random (mean spacing S over the network) until C "
        "are found. Prints the figures; with --json the last line is their JSON. The same options and seed "
        "give the same figures (but wall_seconds).",
    )
    p.add_argument("--members", type=_int("members"), default=100, metavar="N", help="members (default 100)")
    p.add_argument("--peers", type=_int("peers"), default=8, metavar="K", help="each member's target peers (default 8)")
    p.add_argument("--cheeses", type=_int("cheeses"), default=100, metavar="C", help="cheeses to mine (default 100)")
    p.add_argument("--spacing", type=_float("spacing"), default=10.0, metavar="S",
                   help="mean seconds between cheeses (default 10)")
    p.add_argument("--latency", default="20-150", metavar="MIN-MAX", help="one-way latency in ms (default 20-150)")
    p.add_argument("--bandwidth", type=_float("bandwidth"), default=10.0, metavar="MBIT",
                   help="Mbit/s of each direction of a link, 0 for no limit (default 10)")
    p.add_argument("--txs-per-cheese", type=_int("txs-per-cheese"), default=0, metavar="T",
                   help="signed payments entered per mean spacing (default 0)")
    p.add_argument("--seed", type=_int("seed"), default=1, metavar="X", help="the random seed (default 1)")
    p.add_argument("--miners", type=_int("miners"), default=None, metavar="K",
                   help="how many members mine, with equal shares (default: all)")
    p.add_argument("--partition", default=None, metavar="A/B@T1-T2",
                   help="two groups of these sizes that cannot reach each other from T1 to T2 (simulated seconds)")
    p.add_argument("--churn", type=_float("churn"), default=0.0, metavar="RATE",
                   help="share of the members replaced by new ones per simulated hour (default 0)")
    p.add_argument("--late-joiners", type=_int("late-joiners"), default=0, metavar="K",
                   help="members that start halfway through and sync (default 0)")
    p.add_argument("--features", choices=("all", "none"), default="all",
                   help="none: members list no section 5.1 feature (version-1 relay and sync), to compare")
    p.add_argument("--json", action="store_true", help="print the figures as JSON, the last line of stdout")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="draw the propagation CDF and its limit")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_simulate)


def _int(name: str) -> Any:
    def parse(text: str) -> int:
        if not text.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--{name} must be a whole number, got {text[:40]!r}")
        return int(text)

    return parse


def _float(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} must be a number, got {text[:40]!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"--{name} must be a finite number")
        return value

    return parse


def config_from(args: argparse.Namespace) -> Any:
    from cheesecoin.sim.config import ConfigError, SimConfig, parse_latency, parse_partition

    try:
        return SimConfig(
            members=args.members, peers=args.peers, cheeses=args.cheeses, spacing=args.spacing,
            latency=parse_latency(args.latency), bandwidth=args.bandwidth, txs_per_cheese=args.txs_per_cheese,
            seed=args.seed, miners=args.miners,
            partition=parse_partition(args.partition) if args.partition else None,
            churn=args.churn, late_joiners=args.late_joiners, features=args.features,
        ).check()
    except ConfigError as e:
        raise CliError(str(e), USAGE)


def cmd_simulate(args: argparse.Namespace) -> int:
    config = config_from(args)
    if args.plot is not None:
        _need_matplotlib()
    from cheesecoin.sim.world import Simulation

    sim = Simulation(config)

    def progress(p: dict) -> None:
        if not args.quiet:
            print(f"simulate: {p['simulated_seconds']} s simulated in {p['wall_seconds']} s, "
                  f"{p['cheeses_mined']}/{p['cheeses']} cheeses", file=sys.stderr, flush=True)

    figures = sim.run(progress=progress, progress_every=PROGRESS_EVERY)
    print(summary(figures))
    if args.plot is not None:
        plot(sim, figures, args.plot)
        print(f"plot        {args.plot}")
    if args.json:
        print(json.dumps(figures, sort_keys=False))
    return 0


def summary(f: dict) -> str:
    p, lim = f["propagation_ms"], f["propagation_limit_ms"]
    lines = [
        f"members     {f['members']} ({f['members_joined']} took part)",
        f"cheeses     {f['cheeses_mined']} mined, {f['cheeses_on_best']} on the best stack "
        f"(stale rate {f['stale_rate']:.4f})",
        f"propagation p50 {p['p50']} ms, p90 {p['p90']} ms, p99 {p['p99']} ms, max {p['max']} ms",
        f"limit       p50 {lim['p50']} ms, p90 {lim['p90']} ms, p99 {lim['p99']} ms, max {lim['max']} ms "
        "(latency-weighted shortest paths)",
        f"agreement   {'yes' if f['agreement'] else 'NO'} (quiet {f['quiet_seconds']} s after the last cheese), "
        f"{f['reorgs']} reorganisations, deepest {f['max_reorg_depth']}",
        f"traffic     {f['bytes_per_member']} bytes sent per member",
        f"time        {f['simulated_seconds']} s simulated in {f['wall_seconds']} s",
    ]
    return "\n".join(lines)


def _need_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise CliError("--plot needs matplotlib (pip install matplotlib, or the package's [bench] extra)")


def plot(sim: Any, figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delays, limits = sim.propagation_samples()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for values, label in ((sorted(delays), "propagation"), (sorted(limits), "limit (shortest paths)")):
        if values:
            n = len(values)
            ax.plot(values, [(i + 1) / n for i in range(n)], label=label)
    ax.set_xlabel("ms from the cheese being found")
    ax.set_ylabel("share of (cheese, member) pairs")
    ax.set_title(f"{figures['members']} members, stale rate {figures['stale_rate']:.3f}, "
                 f"{figures['cheeses_mined']} cheeses")
    ax.grid(alpha=0.3)
    ax.legend()
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}")
    finally:
        plt.close(fig)

