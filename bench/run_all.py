"""Run every benchmark: one table of figures against limits measured in the same run.

Each benchmark module (``bench/bench_NAME.py``, with ``run(quick) -> list of
figures``) runs in its own subprocess and process group, under a time limit:
a crash, a hang or a leaked member in one module does not spoil the others
(whatever is left in the group when the module ends is killed). The figures
go to ``bench/results.json`` with the machine they were measured on, and one
table goes to stdout; progress and the modules' own output go to stderr.

    .venv/bin/python bench/run_all.py                 # everything (a few minutes on 2 cores)
    .venv/bin/python bench/run_all.py --quick         # smaller sizes, about a minute or two
    .venv/bin/python bench/run_all.py --only memory   # one module (repeatable, or a,b); merged
                                                      # into an existing results.json

The exit status is 0 when every module produced its figures, 1 otherwise
(goals missed do not change it: they are marked in the table).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results.json")

# (module, time limit in seconds for the full run, time limit with --quick)
MODULES: List[Tuple[str, float, float]] = [
    ("verify", 300, 150),
    ("mining", 300, 150),
    ("tracker", 180, 120),
    ("api", 420, 240),
    ("member", 420, 240),
    ("memory", 240, 180),
    ("scaling", 600, 360),
    ("ops", 120, 90),
    ("sim", 900, 420),
    ("tls", 600, 300),
]
NAMES = [m[0] for m in MODULES]


# -- the child: one module ---------------------------------------------------------------


def child(name: str, quick: bool, result_path: str) -> int:
    sys.path.insert(0, HERE)
    start = time.perf_counter()
    try:
        module = __import__(f"bench_{name}")
        figures = module.run(quick=quick)
        out: Dict[str, Any] = {"figures": list(figures)}
        status = 0
    except BaseException:  # noqa: B902 - everything, KeyboardInterrupt included, is reported
        out = {"error": traceback.format_exc()}
        status = 1
    out["seconds"] = time.perf_counter() - start
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, default=float)
    os.replace(tmp, result_path)
    return status


# -- the parent ------------------------------------------------------------------------


def _version(module: str) -> Optional[str]:
    try:
        return str(__import__(module).__version__)
    except Exception:  # noqa: BLE001
        return None


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "twisted": _version("twisted"),
        "cryptography": _version("cryptography"),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            models = re.findall(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if models:
            info["cpu_model"] = models[0].strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            total = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
        if total:
            info["memory_mib"] = int(total.group(1)) // 1024
    except OSError:
        pass
    try:
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        info["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def _kill_group(proc: subprocess.Popen) -> bool:
    """SIGTERM then SIGKILL whatever is left in ``proc``'s process group; True if
    anything was left."""
    pgid = proc.pid
    proc.poll()
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return True
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        proc.poll()  # reap the module's own process, so that it does not linger as a zombie
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _load() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _busy_cpu_seconds() -> Optional[float]:
    """CPU time (all cores, every process) spent not idle since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU time of this process and of every descendant waited for."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_module(name: str, quick: bool, limit: float, result_dir: str) -> Dict[str, Any]:
    """Run bench_NAME in a subprocess; its output goes to stderr with a prefix."""
    result_path = os.path.join(result_dir, f"{name}.json")
    args = [sys.executable, os.path.abspath(__file__), "--child", name, "--result", result_path]
    if quick:
        args.append("--quick")
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    load_before = _load()
    busy_before, own_before = _busy_cpu_seconds(), _own_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    tail: collections.deque = collections.deque(maxlen=60)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            sys.stderr.write(f"[{name}] {line}\n")
            sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        timed_out = True
    except KeyboardInterrupt:
        _kill_group(proc)
        raise
    leaked = _kill_group(proc)  # the module's process group: the child and anything it left
    proc.wait()
    reader.join(5)
    seconds = time.perf_counter() - start
    busy_after, own_after = _busy_cpu_seconds(), _own_cpu_seconds()
    other = None
    if busy_before is not None and busy_after is not None:
        # CPU used on the machine by anything but this benchmark, as a share of all its cores' time
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
        foreign = (busy_after - busy_before) - (own_after - own_before)
        other = round(max(0.0, foreign) / (seconds * cores), 3)
    entry: Dict[str, Any] = {
        "seconds": round(seconds, 1),
        "limit_seconds": limit,
        "returncode": proc.returncode,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # 1-minute load average before and after: other work on the machine shows here
        "load_before": load_before,
        "load_after": _load(),
        # the share of the machine's CPU time used by other processes meanwhile
        "other_cpu_share": other,
        "cpu_seconds": round(own_after - own_before, 1),
    }
    result: Dict[str, Any] = {}
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            result = json.load(f)
    if timed_out:
        entry["status"] = "timeout"
        entry["error"] = f"no result after the {limit:g} s limit; last output:\n" + "\n".join(tail)
    elif "figures" in result:
        entry["status"] = "ok"
    elif "error" in result:
        entry["status"] = "error"
        entry["error"] = result["error"]
    else:
        entry["status"] = "crashed"
        entry["error"] = f"exit status {proc.returncode}, no result; last output:\n" + "\n".join(
            tail
        )
    if leaked and not timed_out:
        entry["leaked_processes"] = (
            True  # something of the module's was still running when it ended
        )
    figures = []
    for f in result.get("figures", []) if entry["status"] == "ok" else []:
        figures.append(dict(f, module=name))
    return {"entry": entry, "figures": figures}


# -- the table -------------------------------------------------------------------------

_GOAL = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([0-9]*\.?[0-9]+)\s*(\S.*)?$")


def goal_met(f: Dict[str, Any]) -> Optional[bool]:
    """Whether a figure meets its goal, when the goal can be read.

    "< 50 ms" (the figure's unit follows the number) is about the value;
    "<= 1.2", ">= 1.8 on 2 cores" are about the ratio (the value if there is
    none); "lower"/"higher" with a limit named "...goal" compare the value
    with that limit.
    """
    goal = str(f.get("goal") or "").strip()
    value, ratio, limit = f.get("value"), f.get("ratio"), f.get("limit")
    if goal in ("lower", "higher"):
        if limit is None or "goal" not in str(f.get("limit_name") or "") or value is None:
            return None
        return float(value) <= float(limit) if goal == "lower" else float(value) >= float(limit)
    m = _GOAL.match(goal)
    if not m:
        return None
    op, bound, rest = m.group(1), float(m.group(2)), (m.group(3) or "").strip()
    if rest and rest.split()[0] == str(f.get("unit")):
        x = value
    else:
        x = ratio if ratio is not None else value
    if x is None:
        return None
    x = float(x)
    return {
        "<": x < bound,
        "<=": x <= bound,
        "≤": x <= bound,
        ">": x > bound,
        ">=": x >= bound,
        "≥": x >= bound,
    }[op]


def fmt(v: Any) -> str:
    if v is None:
        return ""
    v = float(v)
    a = abs(v)
    if a >= 10000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def table(figures: List[Dict[str, Any]]) -> str:
    rows = [("module", "figure", "value", "unit", "limit (same run)", "ratio", "goal", "met")]
    for f in figures:
        limit = "" if f.get("limit") is None else f"{fmt(f['limit'])} ({f.get('limit_name') or ''})"
        ratio = "" if f.get("ratio") is None else f"{float(f['ratio']):.3f}"
        met = goal_met(f)
        rows.append(
            (
                str(f.get("module", "")),
                str(f["name"]),
                fmt(f["value"]),
                str(f["unit"]),
                limit,
                ratio,
                str(f.get("goal") or ""),
                "" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(figures: List[Dict[str, Any]]) -> str:
    """The same table in Markdown (for BENCHMARKS.md)."""
    out = [
        "| module | figure | value | unit | limit (same run) | ratio | goal | met |",
        "|---|---|---:|---|---|---:|---|---|",
    ]
    for f in figures:
        limit = "" if f.get("limit") is None else f"{fmt(f['limit'])} ({f.get('limit_name') or ''})"
        ratio = "" if f.get("ratio") is None else f"{float(f['ratio']):.3f}"
        met = goal_met(f)
        cells = [
            str(f.get("module", "")),
            str(f["name"]),
            fmt(f["value"]),
            str(f["unit"]),
            limit,
            ratio,
            str(f.get("goal") or ""),
            "" if met is None else ("yes" if met else "**no**"),
        ]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes (quick=True for every module)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these modules (repeatable or comma-separated): {', '.join(NAMES)}",
    )
    parser.add_argument("--out", default=RESULTS, help="results file (default bench/results.json)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="time limit per module, seconds"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.result)

    only = [
        n.strip().removeprefix("bench_").removesuffix(".py")
        for item in args.only
        for n in item.split(",")
        if n.strip()
    ]
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)} (known: {', '.join(NAMES)})")
    selected = [m for m in MODULES if not only or m[0] in only]

    import tempfile

    info = machine_info()
    start = time.perf_counter()
    modules: Dict[str, Any] = {}
    figures: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cheesecoin-bench-") as result_dir:
        for name, limit, quick_limit in selected:
            limit = args.timeout or (quick_limit if args.quick else limit)
            sys.stderr.write(
                f"== bench_{name} (limit {limit:g} s){' quick' if args.quick else ''}\n"
            )
            sys.stderr.flush()
            got = run_module(name, args.quick, limit, result_dir)
            modules[name] = got["entry"]
            figures.extend(got["figures"])
            e = got["entry"]
            sys.stderr.write(f"== bench_{name}: {e['status']} in {e['seconds']:.1f} s\n")
            if e["status"] != "ok":
                sys.stderr.write(e.get("error", "") + "\n")
            sys.stderr.flush()
    total = time.perf_counter() - start

    results: Dict[str, Any] = {
        "machine": info,
        "quick": args.quick,
        "total_seconds": round(total, 1),
        "modules": modules,
        "figures": figures,
    }
    if only and os.path.exists(args.out):
        # --only: merge into the previous results, replacing just these modules.
        try:
            with open(args.out, encoding="utf-8") as f:
                previous = json.load(f)
            kept = {k: v for k, v in previous.get("modules", {}).items() if k not in modules}
            order = {n: i for i, n in enumerate(NAMES)}
            merged_modules = dict(
                sorted({**kept, **modules}.items(), key=lambda kv: order.get(kv[0], 99))
            )
            merged_figures = [
                f for f in previous.get("figures", []) if f.get("module") not in modules
            ] + figures
            merged_figures.sort(key=lambda f: order.get(f.get("module"), 99))
            results = dict(
                previous,
                modules=merged_modules,
                figures=merged_figures,
                last_partial_run={
                    "machine": info,
                    "quick": args.quick,
                    "modules": list(modules),
                    "total_seconds": round(total, 1),
                },
            )
        except (OSError, ValueError):
            pass
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=float)
        f.write("\n")
    os.replace(tmp, args.out)

    print(table(figures))
    print()
    for name, e in modules.items():
        last = (e.get("error") or "?").strip().splitlines() or ["?"]
        extra = "" if e["status"] == "ok" else f"  ({last[-1]})"
        other = (
            ""
            if e.get("other_cpu_share") is None
            else f", other processes used {e['other_cpu_share']:.0%} of the CPU"
        )
        print(
            f"bench_{name}: {e['status']}, {e['seconds']:.1f} s "
            f"(CPU {e['cpu_seconds']:g} s){other}{extra}"
        )
    print(
        f"total {total:.1f} s on {info['cpu_count']} cores "
        f"(Python {info['python']}, Twisted {info['twisted']}, "
        f"cryptography {info['cryptography']}); figures in {os.path.relpath(args.out, ROOT)}"
    )
    busy = [n for n, e in modules.items() if (e.get("other_cpu_share") or 0) > 0.1]
    if busy:
        print(
            f"note: other processes used more than 10% of the CPU during {', '.join(busy)}: "
            "rates and ratios there are pessimistic"
        )
    if args.markdown:
        print()
        print(markdown_table(figures))
    return 0 if all(e["status"] == "ok" for e in modules.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
