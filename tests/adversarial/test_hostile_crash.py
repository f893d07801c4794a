"""Crashes (after Bitcoin Core's feature_dbcrash.py): a real member
(``twistd cheesemember``) killed with SIGKILL at random moments while it
mines, and while it syncs from another member, then restarted, again and
again. After every kill its database must load to a valid tip whose ledger
equals a reference stack's for the same cheeses: the member's own stored
best stack replayed through a fresh in-memory ``CheeseStack`` with every
check (signatures included). Heights never go back.

Cycles: 8 by default (``make test``); with ``CHEESECOIN_STORM_SCALE`` above 1,
50 (or 8 x the scale if more); ``CHEESECOIN_CRASH_CYCLES`` sets the number.
The random seed is printed for reproduction (``CHEESECOIN_CRASH_SEED``).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from typing import List, Optional

import pytest
from hostile import storm_scale
from procs import Proc, free_port, http_json, wait_until

from cheesecoin.core.cheese import Network
from cheesecoin.core.stack import CheeseStack
from cheesecoin.storage.sqlite import open_stack
from cheesecoin.testing.chain import make_network, payment_stack

pytestmark = [pytest.mark.storm, pytest.mark.slow]

CYCLES = int(
    os.environ.get(
        "CHEESECOIN_CRASH_CYCLES", 5 if storm_scale() == 1 else max(50, 8 * storm_scale())
    )
)
# pytest.ini allows 300 s a test; a storm of many cycles needs more.
pytestmark.append(pytest.mark.timeout(max(300, 20 * CYCLES)))


def _seed() -> int:
    seed = int(os.environ.get("CHEESECOIN_CRASH_SEED", random.randrange(2**32)))
    print(f"CHEESECOIN_CRASH_SEED={seed}")
    return seed


def check_stored_stack(data_dir: str, network: Network) -> CheeseStack:
    """Load the stack a killed member left, and replay its best stack through a
    fresh CheeseStack (every rule, signatures included): same tip, same ledger."""
    stack = open_stack(data_dir, network)
    try:
        best = [stack.get_by_height(h) for h in range(stack.height + 1)]
        assert best[0] == network.blue_cheese
        reference = CheeseStack(network)
        for cheese in best[1:]:
            reference.add_cheese(cheese, check_signatures=True)
        assert reference.tip.smell == stack.tip.smell and reference.height == stack.height
        assert reference.ledger == stack.ledger, "the reloaded ledger differs from the replayed one"
        assert all(stack.is_best(c["smell"]) for c in best)
        return reference
    finally:
        stack.close()


def start(tmp_path, name: str, network_file: str, data_dir: str, *extra: str) -> "tuple[Proc, int]":
    api = free_port()
    proc = Proc.twistd(
        "cheesemember",
        [
            "--network",
            network_file,
            "--data-dir",
            data_dir,
            "--interface",
            "127.0.0.1",
            "--api-port",
            str(api),
            "--miner-port",
            str(free_port()),
            *extra,
        ],
        str(tmp_path / name),
        name=name,
    )
    return proc, api


def network_file_for(tmp_path, network: Network) -> str:
    path = str(tmp_path / "network.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    return path


def test_a_mining_member_killed_at_random_moments_always_reloads_a_valid_stack(
    tmp_path, procs
) -> None:
    rng = random.Random(_seed())
    # A network of 1 to 8 bits: hundreds of cheeses a second, each one a commit.
    network = make_network("crashmine", bits=rng.randint(1, 8), timestamp=int(time.time()) - 10**5)
    network_file = network_file_for(tmp_path, network)
    data_dir = str(tmp_path / "data")
    heights: List[int] = []
    for cycle in range(CYCLES):
        proc, api = start(
            tmp_path,
            f"miner{cycle}",
            network_file,
            data_dir,
            "--port",
            str(free_port()),
            "--mine",
            "--mining-workers",
            "1",
        )
        procs.append(proc)
        proc.wait_for("Loaded the stack", timeout=60)
        time.sleep(rng.uniform(0.2, 2.0))
        proc.kill9()
        reference = check_stored_stack(data_dir, network)
        assert not heights or reference.height >= heights[-1], "a committed cheese was lost"
        heights.append(reference.height)
        assert (
            f"height {heights[-2] if len(heights) > 1 else 0}," in proc.output()
        )  # restarted where it was
    print("bits", network.bits, "heights after each kill:", heights)
    assert heights[-1] > 0


_PROGRESS = re.compile(r"Syncing from \S+: (\d+)/\d+ \(")


def _until_synced_to(proc: Proc, height: int, timeout: float = 60.0) -> None:
    """Until the member's log shows its download at ``height`` or beyond (or the
    download over). The kill's moment is chosen by progress, not by the clock: a
    faster machine syncs the same 6,000 cheeses in less time, and a kill after a
    fixed delay would land after the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = proc.output()
        if "Synced from" in output or any(int(h) >= height for h in _PROGRESS.findall(output)):
            return
        time.sleep(0.005)
    raise AssertionError(f"the syncer did not reach height {height} in {timeout} s")


@pytest.fixture(scope="module")
def long_stack() -> List[dict]:
    network = make_network("crashsync", bits=1, timestamp=int(time.time()) - 10**6)
    return payment_stack(network, 6000, 2, n_keys=20, seed="crash")


def test_a_syncing_member_killed_at_random_moments_always_reloads_a_valid_stack(
    tmp_path, procs, long_stack
) -> None:
    from cheesecoin.core.cheese import network_from_blue_cheese

    network = network_from_blue_cheese(long_stack[0])
    network_file = network_file_for(tmp_path, network)
    source_dir = str(tmp_path / "source-data")
    stack = open_stack(source_dir, network)
    with stack.batch():
        for cheese in long_stack[1:]:
            stack.add_cheese(cheese, check_signatures=False)
    stack.close()
    source_port = free_port()
    source, source_api = start(
        tmp_path, "source", network_file, source_dir, "--port", str(source_port)
    )
    procs.append(source)
    source.wait_for("HTTP API on", timeout=60)
    rng = random.Random(_seed())
    data_dir = str(tmp_path / "data")
    heights: List[int] = [0]
    syncer: Optional[Proc] = None
    for cycle in range(CYCLES):
        syncer, api = start(
            tmp_path,
            f"sync{cycle}",
            network_file,
            data_dir,
            "--port",
            str(free_port()),
            "--connect",
            f"127.0.0.1:{source_port}",
        )
        procs.append(syncer)
        syncer.wait_for("Loaded the stack", timeout=60)
        # A random moment of the download (not of its headers): a random height
        # between where it restarted and half way to the end, then a random part
        # of the next batch's time.
        remaining = len(long_stack) - 1 - heights[-1]
        if remaining > 1:
            _until_synced_to(syncer, heights[-1] + rng.randint(1, max(1, remaining // 2)))
        time.sleep(rng.uniform(0.0, 0.1))
        syncer.kill9()
        reference = check_stored_stack(data_dir, network)
        assert reference.height >= heights[-1], "a committed cheese was lost"
        heights.append(reference.height)
    print("heights after each kill:", heights)
    # Once left alone it finishes, and ends with the source's stack and ledger.
    syncer, api = start(
        tmp_path,
        "sync-final",
        network_file,
        data_dir,
        "--port",
        str(free_port()),
        "--connect",
        f"127.0.0.1:{source_port}",
    )
    procs.append(syncer)
    syncer.wait_for("HTTP API on", timeout=60)
    tip = long_stack[-1]["smell"]
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{api}/api/status")["tip"] == tip,
        timeout=120,
        what="the syncer at the source's tip",
    )
    syncer.stop()
    final = check_stored_stack(data_dir, network)
    assert final.height == len(long_stack) - 1
    assert any(0 < h < final.height for h in heights), "no kill landed in the middle of the sync"
