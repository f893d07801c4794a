"""Shared helpers for the benchmarks: figures and the table they print."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
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


def percentile(values: List[float], fraction: float) -> float:
    """The value at ``fraction`` of the sorted values (nan for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def pinger(port: int, seconds: float, out: List[float]) -> None:
    """A blocking client (its own thread or process): PING, wait for PONG, every 10 ms;
    each round trip in seconds is appended to ``out``."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb")
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            sock.sendall(b'{"type":"PING","id":%d}\n' % i)
            reply = json.loads(reader.readline())
            assert reply == {"type": "PONG", "id": i}, reply
            out.append(time.perf_counter() - started)
            i += 1
            time.sleep(0.01)


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
