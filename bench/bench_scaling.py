"""Scaling: sync time and memory against the stack's length, propagation against
the number of members.

Sync: a seed member holds a stack of N cheeses (1,000, 5,000, 20,000; quick:
1,000, 2,000, 5,000), each with 2 signed payments (a bits=1 network made with
``cheesecoin.testing``, written straight into the seed's data directory). A
fresh member started late with ``--connect`` to the seed downloads all of it
by locator, checking every signature; we read the download time from its log
("Synced from ... in S s"), wait until its API reports height N, and read
the RSS (``VmRSS``) of both members. This is a real network sync, not a reload.

The limit for each sync time is plain Ed25519 verification of the same
transactions in this run; with only 2 payments a cheese the rest (loopback
TCP, JSON, proof-of-work and ledger checks, SQLite) dominates, which is the
point: this is the per-cheese cost.

Propagation: ``bench_member.propagation`` with 5, 10, 20 and 40 members
(quick: 5, 10, 20): a tracker, the members, one observer per member; the time
from ANNOUNCE at one member until every member has relayed the cheese.

Both are drawn in ``bench/scaling.png`` (two panels, matplotlib Agg); the
figures come back too (and the raw points are printed as one JSON line).

    .venv/bin/python bench/bench_scaling.py [--quick]
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_member  # noqa: E402
from bench_member import propagation  # noqa: E402
from bench_memory import (  # noqa: E402
    MIB,
    listen_port,
    rss_bytes,
    settled_rss,
    start_member,
    store_stack,
    wait_height,
    write_network,
)
from bench_verify import plain_ed25519  # noqa: E402
from common import figure, print_table  # noqa: E402  (also puts tests/ on sys.path)

from cheesecoin.testing.chain import (  # noqa: E402
    make_network,
    payment_stack,  # noqa: E402
)

SYNC_SIZES = (1000, 5000, 20000)
QUICK_SYNC_SIZES = (1000, 2000, 5000)
MEMBER_COUNTS = (5, 10, 20, 40)
QUICK_MEMBER_COUNTS = (5, 10, 20)
TX_PER_CHEESE = 2
ANNOUNCES, QUICK_ANNOUNCES = 10, 6
PLOT = os.path.join(HERE, "scaling.png")
SYNCED = re.compile(r"Synced from \S+: (\d+) cheeses in ([0-9.]+) s")

# 40 members and their connections on one machine: ports outside the ephemeral
# range (see listen_port).
bench_member.free_port = listen_port


def sync_point(network, cheeses: List[dict]) -> Dict[str, float]:
    """Sync ``cheeses`` (Blue Cheese first) from a seed to a late member; time and both RSS."""
    n = len(cheeses) - 1
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        network_file = write_network(tmp, network)
        store_stack(os.path.join(tmp, "seed", "data"), network, cheeses)
        procs = []
        try:
            seed, seed_port, seed_api = start_member(tmp, "seed", network_file)
            procs.append(seed)
            wait_height(seed, seed_api, n, 300)
            late, _, late_api = start_member(
                tmp, "late", network_file, ["--connect", f"127.0.0.1:{seed_port}"]
            )
            procs.append(late)
            wall = wait_height(late, late_api, n, 600)
            late.wait_for("Synced from", timeout=30)
            synced = [(int(a), float(s)) for a, s in SYNCED.findall(late.output())]
            logged = sum(s for _, s in synced)
            if sum(a for a, _ in synced) != n:
                raise AssertionError(
                    f"late member logged {synced}, expected {n} cheeses:\n{late.output()[-2000:]}"
                )
            late_rss = settled_rss(late.popen.pid)
            return {
                "cheeses": n,
                "seconds": logged,
                "wall": wall,
                "late_rss_mib": late_rss / MIB,
                "late_peak_mib": rss_bytes(late.popen.pid, "VmHWM") / MIB,
                "seed_rss_mib": rss_bytes(seed.popen.pid) / MIB,
            }
        finally:
            for proc in procs:
                proc.stop()


def draw(
    sync: List[Dict[str, float]],
    prop: List[Dict[str, float]],
    path: str = PLOT,
    quick: bool = False,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [p["cheeses"] for p in sync]
    left.plot(xs, [p["seconds"] for p in sync], "o-", color="tab:blue", label="sync time (s)")
    if all("plain_ed25519" in p for p in sync):
        left.plot(
            xs,
            [p["plain_ed25519"] for p in sync],
            "x-.",
            color="tab:green",
            label="plain Ed25519 of the same tx (s)",
        )
    left.set_xlabel(f"cheeses in the stack ({TX_PER_CHEESE} signed tx each)")
    left.set_ylabel("initial sync time (s)", color="tab:blue")
    left.set_title("Initial sync of a late member")
    left.grid(alpha=0.3)
    mem = left.twinx()
    mem.plot(
        xs, [p["late_rss_mib"] for p in sync], "s--", color="tab:red", label="RSS synced member"
    )
    mem.plot(
        xs, [p["seed_rss_mib"] for p in sync], "^:", color="tab:orange", label="RSS seed member"
    )
    mem.set_ylabel("RSS (MiB)", color="tab:red")
    mem.set_ylim(bottom=0)
    left.set_ylim(bottom=0)
    lines = left.get_lines() + mem.get_lines()
    left.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)

    ms = [p["members"] for p in prop]
    right.plot(ms, [p["p50_ms"] for p in prop], "o-", label="p50")
    right.plot(ms, [p["max_ms"] for p in prop], "s--", label="max")
    right.axhline(50, color="grey", linestyle=":", label="goal p50 < 50 ms (20 members)")
    right.set_xlabel("members")
    right.set_ylabel("announce to last member (ms)")
    right.set_title("Propagation of a new cheese")
    right.set_xticks(ms)
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(
        f"CheeseCoin scaling{' (--quick)' if quick else ''}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    quick: bool = False, sync_sizes: Sequence[int] = (), member_counts: Sequence[int] = ()
) -> List[Dict[str, object]]:
    sync_sizes = sorted(sync_sizes or (QUICK_SYNC_SIZES if quick else SYNC_SIZES))
    member_counts = sorted(member_counts or (QUICK_MEMBER_COUNTS if quick else MEMBER_COUNTS))
    announces = QUICK_ANNOUNCES if quick else ANNOUNCES

    network = make_network("bench-scaling", bits=1, timestamp=int(time.time()) - 10**6)
    stack = payment_stack(network, sync_sizes[-1], TX_PER_CHEESE, n_keys=50)
    sync = []
    for n in sync_sizes:
        point = sync_point(network, stack[: n + 1])
        point["plain_ed25519"] = min(plain_ed25519(stack[: n + 1]) for _ in range(2))
        point["tx"] = sum(len(c["unit_of_information"]["transactions"]) for c in stack[1 : n + 1])
        sync.append(point)
    del stack

    prop = []
    for count in member_counts:
        latencies = [x * 1000 for x in propagation(count, announces)]
        prop.append(
            {
                "members": count,
                "p50_ms": statistics.median(latencies),
                "max_ms": max(latencies),
                "latencies_ms": latencies,
            }
        )

    print(
        "scaling points:",
        json.dumps({"sync": sync, "propagation": prop, "tx_per_cheese": TX_PER_CHEESE}),
    )
    draw(sync, prop, quick=quick)

    figures = []
    base = sync[0]
    for p in sync:
        n = p["cheeses"]
        figures.append(
            figure(
                f"scaling: sync {n} cheeses ({p['tx']} tx), time",
                p["seconds"],
                "s",
                p["plain_ed25519"],
                "plain Ed25519 of the same tx, s",
            )
        )
        figures.append(
            figure(
                f"scaling: sync {n} cheeses, cheeses/s",
                n / p["seconds"],
                "cheeses/s",
                base["cheeses"] / base["seconds"],
                f"cheeses/s at {base['cheeses']}",
            )
        )
        figures.append(
            figure(
                f"scaling: RSS of member synced to {n} cheeses",
                p["late_rss_mib"],
                "MiB",
                base["late_rss_mib"],
                f"RSS at {base['cheeses']}",
            )
        )
    first = prop[0]
    for p in prop:
        figures.append(
            figure(
                f"scaling: propagation to {p['members']} members, p50",
                p["p50_ms"],
                "ms",
                first["p50_ms"],
                f"p50 at {first['members']} members",
                goal="< 50 ms" if p["members"] == 20 else "",
            )
        )
        figures.append(
            figure(f"scaling: propagation to {p['members']} members, max", p["max_ms"], "ms")
        )
    return figures


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv[1:]))
