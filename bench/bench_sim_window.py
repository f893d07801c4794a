"""Issue 31: the simulator's cost in a steady window, in CPU seconds.

A whole run at 10,000 members takes hours on a busy machine; its cost per
simulated second is measured instead over a window once the members have
found each other. Runs ``Simulation`` (``--spacing 10 --latency 20-150
--seed 1``, the issue's command's settings) and reads the process's CPU time
(``time.process_time``) and wall time at two simulated moments T1 and T2,
then stops. Prints the start (0 to T1) and the window (T1 to T2), the CPU
seconds per simulated second and per member, and the peak RSS so far.
CPU time, unlike wall time, does not count what other processes take (a
saturated machine still inflates it somewhat). With ``--workers K`` the run
is spread over K processes (``cheesecoin.sim.parallel``): the CPU time is
then every worker's (read from /proc), and the wall time is what the
workers save.

    .venv/bin/python bench/bench_sim_window.py [--workers K] MEMBERS [T1 T2]   (default 40 100)
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Stop(Exception):
    """The window is over."""


def _cpu() -> float:
    """CPU seconds of this process and of the workers it forked (still running)."""
    import multiprocessing

    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def window(members: int, t1: float, t2: float, workers: int = 1) -> Dict[str, float]:
    from cheesecoin.sim.config import SimConfig
    from cheesecoin.sim.parallel import run_parallel
    from cheesecoin.sim.world import Simulation

    marks: Dict[float, Tuple[float, float]] = {}
    counted: Dict[str, int] = {}

    def progress(p: dict) -> None:
        now = p["simulated_seconds"]
        counted["cheeses"] = p["cheeses_mined"]
        for t in (t1, t2):
            if now >= t and t not in marks:
                marks[t] = (_cpu(), time.perf_counter())
        if now >= t2:
            raise _Stop()

    config = SimConfig(
        members=members, cheeses=360, spacing=10, latency=(20, 150), seed=1, workers=workers
    ).check()
    cpu0, wall0 = _cpu(), time.perf_counter()
    try:  # progress: every simulated second
        if workers > 1:
            run_parallel(config, progress, 0.0)
        else:
            Simulation(config).run(progress=progress, progress_every=0.0)
    except _Stop:
        pass
    if t2 not in marks:
        raise SystemExit(f"the run ended before {t2:g} simulated seconds")
    (cpu1, wall1), (cpu2, wall2) = marks[t1], marks[t2]
    per_second = (cpu2 - cpu1) / (t2 - t1)
    return {
        "start_cpu": cpu1 - cpu0,
        "start_wall": wall1 - wall0,
        "window_cpu": cpu2 - cpu1,
        "window_wall": wall2 - wall1,
        "cpu_per_simulated_second": per_second,
        "wall_per_simulated_second": (wall2 - wall1) / (t2 - t1),
        "us_per_member_per_simulated_second": per_second / members * 1e6,
        "cheeses_mined": counted["cheeses"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # worker 0
    }


def main(argv: List[str]) -> int:
    workers = 1
    if argv[:1] == ["--workers"] and len(argv) > 1 and argv[1].isdigit():
        workers, argv = int(argv[1]), argv[2:]
    if len(argv) not in (1, 3):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    members = int(argv[0])
    t1, t2 = (float(argv[1]), float(argv[2])) if len(argv) == 3 else (40.0, 100.0)
    if not 0 < t1 < t2:
        print("want 0 < T1 < T2", file=sys.stderr)
        return 2
    sys.path.insert(0, ROOT)
    f = window(members, t1, t2, workers)
    print(
        f"{members} members, {workers} worker(s): start 0-{t1:g} s: {f['start_cpu']:.1f} CPU s "
        f"({f['start_wall']:.1f} wall); window {t1:g}-{t2:g} s: {f['window_cpu']:.1f} CPU s "
        f"({f['window_wall']:.1f} wall), {f['cpu_per_simulated_second']:.3f} CPU s and "
        f"{f['wall_per_simulated_second']:.3f} wall s per simulated s, "
        f"{f['us_per_member_per_simulated_second']:.0f} us of CPU per member; "
        f"{f['cheeses_mined']} cheeses; peak RSS {f['peak_rss_mib']:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
