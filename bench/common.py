"""Shared helpers for the benchmarks: figures and the table they print."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Dict, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def figure(
    name: str,
    value: float,
    unit: str,
    limit: Optional[float] = None,
    limit_name: Optional[str] = None,
    goal: str = "",
    ratio: Optional[float] = None,
) -> Dict[str, object]:
    """One measured figure, with the raw limit measured in the same run."""
    if ratio is None and limit:
        ratio = value / limit
    return {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "limit": None if limit is None else round(limit, 4),
        "limit_name": limit_name,
        "ratio": None if ratio is None else round(ratio, 4),
        "goal": goal,
    }


def print_table(figures: List[Dict[str, object]]) -> None:
    rows = [("figure", "value", "unit", "limit (same run)", "ratio", "goal")]
    for f in figures:
        limit = "" if f["limit"] is None else f"{f['limit']:g} ({f['limit_name']})"
        ratio = "" if f["ratio"] is None else f"{f['ratio']:.3f}"
        rows.append((str(f["name"]), f"{f['value']:g}", str(f["unit"]), limit, ratio, str(f["goal"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaped."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
