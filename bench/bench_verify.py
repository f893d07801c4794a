"""Benchmark: ``cheesecoin verify`` on a generated stack against plain Ed25519.

A stack of 1,500 cheeses with 40 transactions each (quick: 300) is written to
a file; we time verifying it (read, parse, every rule) with one worker and
with every core, each in a fresh process that imports the code, and compare
with plain libsodium verification of the same transactions on one core (the
limit: keys decoded and messages built beforehand), with plain
``cryptography`` (OpenSSL) as a second column. Goals: at most 0.65 of plain
libsodium with every core. With $CHEESECOIN_BENCH_BASELINE naming another
checkout (``git worktree add``), that code verifies the same file in the same
run, and the speed-up over it is a figure too (goal: at least 1.5).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    ROOT,
    baseline_tree,
    figure,
    plain_cryptography,
    plain_libsodium,
    print_table,
    run_in_tree,
)

from cheesecoin.testing.chain import make_network, payment_stack  # noqa: E402

plain_ed25519 = plain_cryptography  # the name bench_scaling imports

# Run in a fresh process with cheesecoin imported from the tree under test: the
# best of REPEATS timings of verify_stack on the file (reading and parsing included).
TIME_VERIFY = """
import sys, time
from cheesecoin.cli.chain import _read_stack, verify_stack
path, workers, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    stack = verify_stack(_read_stack(path), workers, clock=lambda: 4e9)
    best = min(best, time.perf_counter() - start)
    assert stack.height > 0
print(best)
"""


def timed_verify(tree: str, path: str, workers: int, repeats: int = 2) -> float:
    """Best seconds of ``cheesecoin verify --workers N`` on ``path`` with the code of ``tree``."""
    return float(run_in_tree(tree, TIME_VERIFY, path, str(workers), str(repeats)).split()[-1])


def run(quick: bool = False) -> List[Dict[str, object]]:
    n_cheeses, per = (300, 40) if quick else (1500, 40)
    network = make_network("bench-verify", bits=1)
    cheeses = payment_stack(network, n_cheeses, per, n_keys=50)
    n_tx = sum(len(c["unit_of_information"]["transactions"]) for c in cheeses[1:])
    workers = os.cpu_count() or 1
    baseline = baseline_tree()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stack.json")
        with open(path, "w") as f:
            json.dump(cheeses, f)
        sodium = min(plain_libsodium(cheeses) for _ in range(3))
        openssl = min(plain_cryptography(cheeses) for _ in range(2))
        one = timed_verify(ROOT, path, 1)
        many = timed_verify(ROOT, path, workers)
        if baseline is not None:
            old_one = timed_verify(baseline, path, 1)
            old_many = timed_verify(baseline, path, workers)
    figures = [
        figure("verify cheeses/s (1 core)", n_cheeses / one, "cheeses/s"),
        figure("verify tx/s (1 core)", n_tx / one, "tx/s", n_tx / sodium, "plain libsodium tx/s"),
        figure(
            "plain cryptography tx/s (1 core)",
            n_tx / openssl,
            "tx/s",
            n_tx / sodium,
            "plain libsodium tx/s",
        ),
        figure("verify time / plain libsodium (1 core)", one / sodium, "ratio", ratio=one / sodium),
        figure(
            "verify time / plain cryptography (1 core)", one / openssl, "ratio", ratio=one / openssl
        ),
        figure(
            f"verify tx/s ({workers} cores)",
            n_tx / many,
            "tx/s",
            n_tx / sodium,
            "plain libsodium tx/s (1 core)",
        ),
        figure(
            f"verify time / plain libsodium ({workers} cores)",
            many / sodium,
            "ratio",
            goal="<= 0.65",
            ratio=many / sodium,
        ),
        figure(
            f"verify time / plain cryptography ({workers} cores)",
            many / openssl,
            "ratio",
            ratio=many / openssl,
        ),
    ]
    if baseline is not None:
        figures += [
            # value: the baseline's time; limit: this code's; ratio: the speed-up
            figure("verify time of the baseline code (1 core)", old_one, "s", one, "this code, s"),
            figure(
                f"verify time of the baseline code ({workers} cores)",
                old_many,
                "s",
                many,
                "this code, s",
                goal=">= 1.5",
            ),
        ]
    return figures


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
