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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A checkout of the code to compare with, measured in the same run on the same
# stack (``git worktree add /tmp/old-main COMMIT``); unset: no such figures.
BASELINE_ENV = "CHEESECOIN_BENCH_BASELINE"


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
        rows.append(
            (str(f["name"]), f"{f['value']:g}", str(f["unit"]), limit, ratio, str(f["goal"]))
        )
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


# -- the limits: plain verification of the same transactions, on one core ----------------


def _signed_items(cheeses: List[dict]) -> List[tuple]:
    from cheesecoin.core.tx import signing_bytes

    txs = [tx for c in cheeses[1:] for tx in c["unit_of_information"]["transactions"]]
    return [(tx["from"], bytes.fromhex(tx["signature"]), signing_bytes(tx)) for tx in txs]


def plain_libsodium(cheeses: List[dict]) -> float:
    """Seconds for libsodium (PyNaCl) alone to verify every transaction of ``cheeses``
    on one core: keys decoded and signed messages built beforehand."""
    from nacl.bindings import crypto_sign_open

    items = _signed_items(cheeses)
    keys = {a: bytes.fromhex(a) for a in {a for a, _, _ in items}}
    prepared = [(sig + msg, keys[a]) for a, sig, msg in items]
    start = time.perf_counter()
    for signed, key in prepared:
        crypto_sign_open(signed, key)
    return time.perf_counter() - start


def plain_cryptography(cheeses: List[dict]) -> float:
    """The same with ``cryptography`` (OpenSSL), public-key objects loaded beforehand."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    items = _signed_items(cheeses)
    senders = {a for a, _, _ in items}
    keys = {a: Ed25519PublicKey.from_public_bytes(bytes.fromhex(a)) for a in senders}
    prepared = [(keys[a], sig, msg) for a, sig, msg in items]
    start = time.perf_counter()
    for key, sig, msg in prepared:
        key.verify(sig, msg)
    return time.perf_counter() - start


# -- the baseline: another checkout of the code, in the same run -------------------------


def baseline_tree() -> Optional[str]:
    """The checkout named by $CHEESECOIN_BENCH_BASELINE, None when unset."""
    path = os.environ.get(BASELINE_ENV)
    if not path:
        return None
    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, "cheesecoin", "__init__.py")):
        raise SystemExit(f"${BASELINE_ENV}={path} is not a checkout of cheesecoin")
    return path


def tree_env(tree: str) -> Dict[str, str]:
    """Environment for a process that must import ``cheesecoin`` from ``tree``."""
    return {"PYTHONPATH": tree}


def run_in_tree(tree: str, code: str, *args: str, timeout: float = 900.0) -> str:
    """Run ``python -c code args`` with ``cheesecoin`` imported from ``tree``; its stdout."""
    env = dict(os.environ, **tree_env(tree))
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: {done.stderr[-2000:]}")
    return done.stdout
