"""``cheesecoin simulate``: N real members on a virtual clock (docs/protocol.md section 9).

Prints a progress line on stderr every few seconds of wall time on long runs,
a summary for people on stdout, and with ``--json`` the figures as the last
line of stdout. ``--plot FILE.png`` draws the propagation CDF against its
limit, or with ``--selfish A,B,...`` (one run per share) the selfish pool's
measured revenue beside Eyal and Sirer's curve (needs matplotlib:
``pip install 'cheesecoin[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from cheesecoin.cli.errors import USAGE, CliError
from cheesecoin.sim.config import CHEESE_US, VERIFY_US

PROGRESS_EVERY = 10.0  # wall seconds between progress lines
AUTO_WORKERS_FROM = 5000  # members from which a run that allows it takes two workers


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run many real members on a virtual clock and measure the network",
        description="Run N members (the real member code, in-memory stacks) in this process "
        "on a virtual clock, over simulated links (one-way latency drawn per pair from MIN-MAX "
        "ms, each direction at the given bandwidth), with miners finding cheeses at random "
        "(mean spacing S over the network) until C are found. Prints the figures; with --json "
        "the last line is their JSON. The same options and seed give the same figures (but "
        "wall_seconds).",
    )
    p.add_argument(
        "--members", type=_int("members"), default=100, metavar="N", help="members (default 100)"
    )
    p.add_argument(
        "--peers",
        type=_int("peers"),
        default=8,
        metavar="K",
        help="each member's target peers (default 8)",
    )
    p.add_argument(
        "--cheeses",
        type=_int("cheeses"),
        default=100,
        metavar="C",
        help="cheeses to mine (default 100)",
    )
    p.add_argument(
        "--spacing",
        type=_float("spacing"),
        default=10.0,
        metavar="S",
        help="mean seconds between cheeses (default 10)",
    )
    p.add_argument(
        "--latency",
        default="20-150",
        metavar="MIN-MAX",
        help="one-way latency in ms (default 20-150)",
    )
    p.add_argument(
        "--bandwidth",
        type=_float("bandwidth"),
        default=10.0,
        metavar="MBIT",
        help="Mbit/s of each direction of a link, 0 for no limit (default 10)",
    )
    p.add_argument(
        "--txs-per-cheese",
        type=_int("txs-per-cheese"),
        default=0,
        metavar="T",
        help="signed payments entered per mean spacing (default 0)",
    )
    p.add_argument(
        "--seed", type=_int("seed"), default=1, metavar="X", help="the random seed (default 1)"
    )
    p.add_argument(
        "--miners",
        type=_int("miners"),
        default=None,
        metavar="K",
        help="how many members mine, with equal shares (default: all)",
    )
    p.add_argument(
        "--partition",
        default=None,
        metavar="A/B@T1-T2",
        help="two groups of these sizes that cannot reach each other from T1 to T2 "
        "(simulated seconds)",
    )
    p.add_argument(
        "--churn",
        type=_float("churn"),
        default=0.0,
        metavar="RATE",
        help="share of the members replaced by new ones per simulated hour (default 0)",
    )
    p.add_argument(
        "--late-joiners",
        type=_int("late-joiners"),
        default=0,
        metavar="K",
        help="members that start halfway through and sync (default 0)",
    )
    p.add_argument(
        "--features",
        choices=("all", "rev2", "none"),
        default="all",
        help="what members list in HELLO: all (sections 5.1 and 5.2), rev2 (section 5.1: "
        "compact relay to every compact peer, TX pushed whole), none (version-1 relay)",
    )
    p.add_argument(
        "--verify-us",
        type=_float("verify-us"),
        default=None,
        metavar="US",
        help="simulated microseconds a member spends per payment validating a cheese, plus "
        f"{CHEESE_US:g} per cheese, before it relays it; 0: no CPU time (default {VERIFY_US:g}, "
        "measured: docs/protocol.md section 10)",
    )
    p.add_argument(
        "--selfish",
        default=None,
        metavar="ALPHA[,ALPHA...]",
        help="one member is a selfish pool (Eyal and Sirer) with this share of the hash power; "
        "several shares: one run each (the JSON is then a list)",
    )
    p.add_argument(
        "--selfish-peers",
        type=_int("selfish-peers"),
        default=8,
        metavar="K",
        help="how many members the selfish pool connects to (default 8)",
    )
    p.add_argument(
        "--workers",
        type=_int("workers"),
        default=None,
        metavar="K",
        help="processes to spread the members over, one per core: a deterministic run of its "
        "own (docs/protocol.md section 9); not with payments, --selfish or --partition "
        f"(default: 2 from {AUTO_WORKERS_FROM} members when the run allows it, else 1)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the figures as JSON, the last line of stdout"
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="draw the propagation CDF and its limit (with --selfish: the revenue curve)",
    )
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


def parse_shares(text: str) -> List[float]:
    """ "0.1,0.25" -> [0.1, 0.25]: the selfish pool's shares, one run each."""
    from cheesecoin.sim.config import ConfigError

    shares = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(
                f"bad --selfish {text[:40]!r}: give shares such as 0.3 or 0.1,0.2,0.3"
            )
        if not 0 < value < 0.5:
            raise ConfigError("--selfish must be a share of the hash power above 0 and below 0.5")
        shares.append(value)
    if len(shares) > 100:
        raise ConfigError("--selfish takes at most 100 shares")
    return shares


def config_from(args: argparse.Namespace, selfish: Optional[float] = None) -> Any:
    from cheesecoin.sim.config import ConfigError, SimConfig, parse_latency, parse_partition

    try:
        return SimConfig(
            members=args.members,
            peers=args.peers,
            cheeses=args.cheeses,
            spacing=args.spacing,
            latency=parse_latency(args.latency),
            bandwidth=args.bandwidth,
            txs_per_cheese=args.txs_per_cheese,
            seed=args.seed,
            miners=args.miners,
            partition=parse_partition(args.partition) if args.partition else None,
            churn=args.churn,
            late_joiners=args.late_joiners,
            features=args.features,
            verify_us=VERIFY_US if args.verify_us is None else args.verify_us,
            selfish=selfish,
            selfish_peers=args.selfish_peers,
            workers=_workers(args, selfish),
        ).check()
    except ConfigError as e:
        raise CliError(str(e), USAGE)


def _workers(args: argparse.Namespace, selfish: Optional[float]) -> int:
    """--workers, or its default: two for a large run that a parallel run can make."""
    if args.workers is not None:
        return int(args.workers)
    whole_network = args.txs_per_cheese or selfish is not None or args.partition
    return 2 if args.members >= AUTO_WORKERS_FROM and not whole_network else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from cheesecoin.sim.config import ConfigError

    try:
        shares: List[Optional[float]] = list(parse_shares(args.selfish)) if args.selfish else [None]
    except ConfigError as e:
        raise CliError(str(e), USAGE)
    configs = [config_from(args, share) for share in shares]
    if args.plot is not None:
        _need_matplotlib()
    from cheesecoin.sim.world import Simulation

    def progress(p: dict) -> None:
        if not args.quiet:
            print(
                f"simulate: {p['simulated_seconds']} s simulated in {p['wall_seconds']} s, "
                f"{p['cheeses_mined']}/{p['cheeses']} cheeses",
                file=sys.stderr,
                flush=True,
            )

    runs = []
    sim: Any = None
    for config in configs:
        if config.workers > 1:
            from cheesecoin.sim.exchange import WorkerFailed
            from cheesecoin.sim.parallel import run_parallel

            try:
                sim, figures = run_parallel(config, progress, PROGRESS_EVERY)
            except WorkerFailed as e:
                raise CliError(f"the parallel run failed: {e}")
        else:
            sim = Simulation(config)
            figures = sim.run(progress=progress, progress_every=PROGRESS_EVERY)
        runs.append(figures)
        if len(configs) > 1:
            print(f"selfish     alpha {config.selfish}")
        print(summary(figures))
    if args.plot is not None:
        if args.selfish:
            plot_revenue({f"{args.selfish_peers} pool peers": runs}, args.plot)
        else:
            plot(sim, runs[0], args.plot)
        print(f"plot        {args.plot}")
    if args.json:
        print(json.dumps(runs if len(runs) > 1 else runs[0], sort_keys=False))
    args.leave_at_once = True  # the console command ends without freeing the members
    return 0


def summary(f: dict) -> str:
    p, lim = f["propagation_ms"], f["propagation_limit_ms"]
    lines = [
        f"members     {f['members']} ({f['members_joined']} took part)",
        f"cheeses     {f['cheeses_mined']} mined, {f['cheeses_on_best']} on the best stack "
        f"(stale rate {f['stale_rate']:.4f})",
        f"propagation p50 {p['p50']} ms, p90 {p['p90']} ms, p99 {p['p99']} ms, max {p['max']} ms",
        f"limit       p50 {lim['p50']} ms, p90 {lim['p90']} ms, p99 {lim['p99']} ms, "
        f"max {lim['max']} ms (latency-weighted shortest paths)",
        f"agreement   {'yes' if f['agreement'] else 'NO'} "
        f"(quiet {f['quiet_seconds']} s after the last cheese), "
        f"{f['reorgs']} reorganisations, deepest {f['max_reorg_depth']}",
        f"traffic     {f['bytes_per_member']} bytes sent per member",
        f"time        {f['simulated_seconds']} s simulated in {f['wall_seconds']} s",
    ]
    pool = f.get("selfish")
    if pool is not None:
        measured = ""
        if pool.get("revenue_theory_measured") is not None:
            measured = (
                f"; {pool['revenue_theory_measured']:.4f} at measured alpha "
                f"{pool['alpha_measured']:.4f} too"
            )
        lines.append(
            f"selfish     alpha {pool['alpha']}: revenue share {pool['revenue_share']:.4f} "
            f"(theory {pool['revenue_theory']:.4f} at measured gamma {pool['gamma_measured']:.4f}"
            f"{measured}, {pool['tie_cheeses']} honest cheeses found in races)"
        )
    return "\n".join(lines)


def _need_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise CliError(
            "--plot needs matplotlib (pip install matplotlib, or the package's [bench] extra)"
        )


def plot(sim: Any, figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delays, limits = sim.propagation_samples()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for values, label in (
        (sorted(delays), "propagation"),
        (sorted(limits), "limit (shortest paths)"),
    ):
        if values:
            n = len(values)
            ax.plot(values, [(i + 1) / n for i in range(n)], label=label)
    ax.set_xlabel("ms from the cheese being found")
    ax.set_ylabel("share of (cheese, member) pairs")
    ax.set_title(
        f"{figures['members']} members, stale rate {figures['stale_rate']:.3f}, "
        f"{figures['cheeses_mined']} cheeses"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}")
    finally:
        plt.close(fig)


def plot_revenue(series: Dict[str, List[dict]], path: str) -> None:
    """The pool's measured revenue share against alpha, beside Eyal and Sirer's
    R(alpha, gamma) at each run's measured gamma and at gamma 0 and 1/2; one
    series of runs per label (such as a --selfish-peers setting). Per series
    also R at each run's measured alpha and gamma (a distinct marker, drawn at
    the run's alpha so that its gap to the measured share is the difference
    the figures give; runs without those keys are left out of it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cheesecoin.sim.selfish import revenue_theory

    grid = [i / 200 for i in range(1, 100)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(grid, grid, color="grey", lw=1, label="honest mining (revenue = alpha)")
    for gamma, style in ((0.0, ":"), (0.5, "--")):
        ax.plot(
            grid,
            [revenue_theory(a, gamma) for a in grid],
            style,
            color="black",
            lw=1,
            label=f"theory, gamma = {gamma:g}",
        )
    members = cheeses = 0
    colors = ("tab:red", "tab:blue", "tab:green", "tab:purple")
    for (label, runs), color in zip(series.items(), colors):
        pools = sorted((f["selfish"] for f in runs), key=lambda p: p["alpha"])
        alphas = [p["alpha"] for p in pools]
        ax.plot(
            alphas,
            [p["revenue_theory"] for p in pools],
            "x--",
            color=color,
            lw=1,
            label=f"{label}: theory at the measured gamma",
        )
        at_measured = [p for p in pools if p.get("revenue_theory_measured") is not None]
        if at_measured:
            ax.plot(
                [p["alpha"] for p in at_measured],
                [p["revenue_theory_measured"] for p in at_measured],
                "^",
                color=color,
                mfc="none",
                label=f"{label}: theory at the measured alpha and gamma",
            )
        ax.plot(
            alphas,
            [p["revenue_share"] for p in pools],
            "o",
            color=color,
            label=f"{label}: measured",
        )
        members, cheeses = runs[0]["members"], runs[0]["cheeses_mined"]
    ax.set_xlabel("pool's share of the hash power (alpha)")
    ax.set_ylabel("pool's share of the best stack")
    ax.set_title(
        f"selfish mining on the real member code, {members} members, {cheeses} cheeses a run",
        fontsize=10,
    )
    ax.set_xlim(0, 0.5)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}")
    finally:
        plt.close(fig)
