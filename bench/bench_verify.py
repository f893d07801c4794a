"""Benchmark: ``cheesecoin verify`` on a generated stack against plain Ed25519.

A stack of 1,500 cheeses with 40 transactions each (quick: 300) is written to
a file; we time verifying it (read, parse, every rule) with one worker and
with every core, and plain Ed25519 verification of the same transactions
(public keys loaded once, messages prepared beforehand) in the same run.
Goals: ratio at most 1.2 on one core, below 0.7 on both cores.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import figure, print_table  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

from cheesecoin.cli.chain import _read_stack, verify_stack  # noqa: E402
from cheesecoin.testing.chain import make_network, payment_stack  # noqa: E402
from cheesecoin.core.tx import signing_bytes  # noqa: E402


def plain_ed25519(cheeses: List[dict]) -> float:
    txs = [tx for c in cheeses[1:] for tx in c["unit_of_information"]["transactions"]]
    keys = {a: Ed25519PublicKey.from_public_bytes(bytes.fromhex(a)) for a in {tx["from"] for tx in txs}}
    items = [(keys[tx["from"]], bytes.fromhex(tx["signature"]), signing_bytes(tx)) for tx in txs]
    start = time.perf_counter()
    for key, sig, msg in items:
        key.verify(sig, msg)
    return time.perf_counter() - start


def timed_verify(path: str, workers: int) -> float:
    start = time.perf_counter()
    stack = verify_stack(_read_stack(path), workers, clock=lambda: 4e9)
    elapsed = time.perf_counter() - start
    assert stack.height > 0
    return elapsed


def run(quick: bool = False) -> List[Dict[str, object]]:
    n_cheeses, per = (300, 40) if quick else (1500, 40)
    network = make_network("bench-verify", bits=1)
    cheeses = payment_stack(network, n_cheeses, per, n_keys=50)
    n_tx = sum(len(c["unit_of_information"]["transactions"]) for c in cheeses[1:])
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stack.json")
        with open(path, "w") as f:
            json.dump(cheeses, f)
        plain = min(plain_ed25519(cheeses) for _ in range(2))
        one = min(timed_verify(path, 1) for _ in range(2))
        many = min(timed_verify(path, workers) for _ in range(2))
    return [
        figure("verify cheeses/s (1 core)", n_cheeses / one, "cheeses/s"),
        figure("verify tx/s (1 core)", n_tx / one, "tx/s", n_tx / plain, "plain Ed25519 tx/s"),
        figure("verify time / plain Ed25519 (1 core)", one / plain, "ratio", goal="<= 1.2",
               ratio=one / plain),
        figure(f"verify tx/s ({workers} cores)", n_tx / many, "tx/s", n_tx / plain, "plain Ed25519 tx/s (1 core)"),
        figure(f"verify time / plain Ed25519 ({workers} cores)", many / plain, "ratio", goal="< 0.7",
               ratio=many / plain),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
