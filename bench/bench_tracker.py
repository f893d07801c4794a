"""Benchmark of the tracker: 1,000 members register and ask for peers.

Starts the real ``twistd -n cheesetracker`` on a free loopback port, connects
1,000 members (200 with ``quick``) from this process with asyncio, then each
member sends REGISTER and, once all are registered, GET_PEERS, with a bounded
number of requests in flight (as many members acting at about the same time),
and finally all of them ask GET_PEERS at once (a burst). Every PEERS reply is
checked (at most 10, never the asker, no duplicates, only registered members).

    .venv/bin/python bench/bench_tracker.py [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from common import stop_process  # bench/ is on sys.path (script dir, or run_all)

from cheesecoin.tracker.tap import raise_fd_limit
from cheesecoin.util import localports

MEMBERS = 1000
QUICK_MEMBERS = 200
IN_FLIGHT = 50  # requests outstanding at once in the paced phases
P99_GOAL_MS = 20.0
READY = "Tracker waiting for new connection."
TWISTD = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
]


def _free_port() -> int:
    return localports.free_port()  # from $CHEESECOIN_BASE_PORT up when it is set


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def _figure(
    name: str,
    value: float,
    unit: str,
    goal: str,
    limit: Optional[float] = None,
    limit_name: Optional[str] = None,
) -> dict:
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "limit": limit,
        "limit_name": limit_name,
        "ratio": (value / limit) if limit else None,
        "goal": goal,
    }


class _Member:
    def __init__(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.index = index
        self.port = 30000 + index
        self.reader = reader
        self.writer = writer

    async def ask(self, msg: dict) -> tuple[dict, float]:
        start = time.perf_counter()
        self.writer.write(json.dumps(msg).encode() + b"\n")
        line = await self.reader.readline()
        elapsed = time.perf_counter() - start
        if not line:
            raise RuntimeError(f"member {self.index}: the tracker closed the connection")
        return json.loads(line), elapsed


def _check_peers(member: _Member, reply: dict, registered: set) -> None:
    if reply.get("type") != "PEERS":
        raise RuntimeError(f"member {member.index}: expected PEERS, got {reply}")
    peers = [(p["host"], p["port"]) for p in reply["peers"]]
    me = ("127.0.0.1", member.port)
    if (
        len(peers) > 10
        or len(set(peers)) != len(peers)
        or me in peers
        or not set(peers) <= registered
    ):
        raise RuntimeError(f"member {member.index}: bad PEERS {peers}")


async def _clients(port: int, count: int) -> dict:
    async def connect(i: int, gate: asyncio.Semaphore) -> _Member:
        async with gate:  # do not flood the listen queue with SYNs
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            return _Member(i, reader, writer)

    gate = asyncio.Semaphore(IN_FLIGHT)
    start = time.perf_counter()
    members = await asyncio.gather(*(connect(i, gate) for i in range(count)))
    connect_seconds = time.perf_counter() - start

    registered = {("127.0.0.1", m.port) for m in members}
    latencies: list[float] = []

    async def paced(member: _Member, msg: dict) -> None:
        async with gate:
            reply, elapsed = await member.ask(dict(msg, id=member.index))
        latencies.append(elapsed)
        if reply.get("id") != member.index:
            raise RuntimeError(f"member {member.index}: the reply does not echo the id: {reply}")
        _check_peers(member, reply, registered)

    start = time.perf_counter()
    await asyncio.gather(*(paced(m, {"type": "REGISTER", "port": m.port}) for m in members))
    register_seconds = time.perf_counter() - start

    start = time.perf_counter()
    await asyncio.gather(*(paced(m, {"type": "GET_PEERS"}) for m in members))
    get_peers_seconds = time.perf_counter() - start

    burst: list[float] = []

    async def at_once(member: _Member) -> None:
        reply, elapsed = await member.ask({"type": "GET_PEERS"})
        _check_peers(member, reply, registered)
        if len(reply["peers"]) != min(10, count - 1):
            raise RuntimeError(f"member {member.index}: {len(reply['peers'])} peers")
        burst.append(elapsed)

    await asyncio.gather(*(at_once(m) for m in members))

    for member in members:
        member.writer.close()
    return {
        "connect_seconds": connect_seconds,
        "register_seconds": register_seconds,
        "get_peers_seconds": get_peers_seconds,
        "latencies": latencies,
        "burst": burst,
    }


def _start_tracker(workdir: Path, count: int) -> tuple[subprocess.Popen, Path, int]:
    port = _free_port()
    log_path = workdir / "tracker.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(
        TWISTD
        + [
            "-n",
            "--pidfile=",
            "--logfile=-",
            "cheesetracker",
            "--port",
            str(port),
            "--interface",
            "127.0.0.1",
        ]
        + ["--max-per-ip", str(count + 10)],
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    log_file.close()
    deadline = time.monotonic() + 30
    while READY not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                "the tracker did not start:\n" + log_path.read_text(errors="replace")
            )
        time.sleep(0.02)
    return proc, log_path, port


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; return its figures."""
    count = QUICK_MEMBERS if quick else MEMBERS
    raise_fd_limit(count + 256)  # this process holds one socket per member
    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as tmp:
        proc, log_path, port = _start_tracker(Path(tmp), count)
        try:
            result = asyncio.run(_clients(port, count))
        finally:
            stop_process(proc, 10)
        log = log_path.read_text(errors="replace")
        if f"Registered member 127.0.0.1:{30000 + count - 1} ({count} active)" not in log:
            raise RuntimeError("the tracker did not log every registration")
    latencies_ms = [x * 1000 for x in result["latencies"]]
    burst_ms = [x * 1000 for x in result["burst"]]
    p99 = _percentile(latencies_ms, 0.99)
    where = f"{count} members, {IN_FLIGHT} in flight"
    return [
        _figure(
            f"tracker registrations per second ({where})",
            count / result["register_seconds"],
            "1/s",
            "higher",
        ),
        _figure(
            f"tracker GET_PEERS per second ({where})",
            count / result["get_peers_seconds"],
            "1/s",
            "higher",
        ),
        _figure(
            f"tracker p99 reply time, REGISTER and GET_PEERS ({where})",
            p99,
            "ms",
            "lower",
            limit=P99_GOAL_MS,
            limit_name="p99 goal",
        ),
        _figure(
            f"tracker median reply time ({where})", _percentile(latencies_ms, 0.5), "ms", "lower"
        ),
        _figure(
            f"tracker p99 reply time, all {count} GET_PEERS at once",
            _percentile(burst_ms, 0.99),
            "ms",
            "lower",
        ),
        _figure(
            f"tracker connect time for {count} members",
            result["connect_seconds"] * 1000,
            "ms",
            "lower",
        ),
    ]


def _table(figures: list[dict]) -> str:
    rows = [("figure", "value", "unit", "limit", "ratio")]
    for f in figures:
        limit = "" if f["limit"] is None else f"{f['limit']:g} ({f['limit_name']})"
        ratio = "" if f["ratio"] is None else f"{f['ratio']:.2f}"
        rows.append((f["name"], f"{f['value']:.2f}", f["unit"], limit, ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


if __name__ == "__main__":
    print(_table(run(quick="--quick" in sys.argv[1:])))
