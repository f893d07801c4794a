"""A network partition: four real members, each in its own network namespace
(``ip netns``) on a veth pair to a bridge in a hub namespace, links slowed and
lossy with ``tc netem`` where the kernel has it. Group A (two miners) and
group B (one miner) are split onto two bridges and mine apart, then joined:
every member converges on the branch with more work, and the other branch
is abandoned.

Only addresses inside the namespaces this test creates are used
(10.77.0.1-4); everything is removed in a ``finally``. Skipped, with the
reason, where namespaces cannot be made (not root, no ``ip``, no permission).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import pytest
from procs import TWISTD, Proc

from cheesecoin.core.pow import search_nonce
from cheesecoin.testing.chain import make_network

pytestmark = pytest.mark.slow

PORT = 24331
TAG = f"c{os.getpid() % 100000}"  # this run's prefix for namespaces and interfaces
HUB = f"{TAG}hub"
MEMBERS = [1, 2, 3, 4]
GROUP_A, GROUP_B = [1, 2], [3, 4]
MINERS = {1, 2, 3}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def ns(i: int) -> str:
    return f"{TAG}m{i}"


def namespaces_unavailable() -> Optional[str]:
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{TAG}probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        veth = ip(
            "link", "add", f"{TAG}pa", "type", "veth", "peer", "name", f"{TAG}pb", check=False
        )
        if veth.returncode != 0:
            return f"cannot create a veth pair: {veth.stderr.strip()}"
        ip("link", "del", f"{TAG}pa", check=False)
    finally:
        ip("netns", "del", probe, check=False)
    return None


def netem_available() -> bool:
    if shutil.which("tc") is None:
        return False
    probe = f"{TAG}netem"
    ip("netns", "add", probe)
    try:
        ip("-n", probe, "link", "set", "lo", "up")
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                probe,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                "1ms",
            ],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0
    finally:
        ip("netns", "del", probe, check=False)


def build_topology(netem: bool) -> None:
    ip("netns", "add", HUB)
    ip("-n", HUB, "link", "set", "lo", "up")
    for bridge in ("br0", "br1"):
        ip("-n", HUB, "link", "add", bridge, "type", "bridge")
        ip("-n", HUB, "link", "set", bridge, "up")
    for i in MEMBERS:
        ip("netns", "add", ns(i))
        ip("-n", ns(i), "link", "set", "lo", "up")
        inner, outer = f"{TAG}v{i}", f"{TAG}p{i}"
        ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        ip("link", "set", inner, "netns", ns(i))
        ip("link", "set", outer, "netns", HUB)
        ip("-n", ns(i), "addr", "add", f"10.77.0.{i}/24", "dev", inner)
        ip("-n", ns(i), "link", "set", inner, "up")
        ip("-n", HUB, "link", "set", outer, "master", "br0", "up")
        if netem:
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns(i),
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    inner,
                    "root",
                    "netem",
                    "delay",
                    "15ms",
                    "5ms",
                    "loss",
                    "1%",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )


def move_group(group: List[int], bridge: str) -> None:
    for i in group:
        ip("-n", HUB, "link", "set", f"{TAG}p{i}", "master", bridge)


def teardown() -> None:
    for name in [ns(i) for i in MEMBERS] + [HUB]:
        ip("netns", "del", name, check=False)


def calibrated_bits() -> int:
    """Bits for which one mining worker alone would find a cheese about every 0.3 s here."""
    count = 1_000_000  # the native search does this in about 50 ms; long enough to measure it
    start = time.perf_counter()
    search_nonce("calibrate:", 160, 0, count)
    rate = count / max(1e-6, time.perf_counter() - start)
    return max(8, min(24, round(math.log2(rate * 0.3))))


def db_tip(data_dir: str) -> Tuple[str, int]:
    """The stored tip of a member and its height, read beside the running member."""
    db = sqlite3.connect(
        f"file:{os.path.join(data_dir, 'stack.sqlite3')}?mode=ro", uri=True, timeout=10
    )
    try:
        tip = db.execute("SELECT value FROM meta WHERE key = 'tip'").fetchone()[0]
        height = db.execute("SELECT height FROM cheeses WHERE smell = ?", (tip,)).fetchone()[0]
        return tip, height
    finally:
        db.close()


def is_ancestor(data_dir: str, smell: str, of: str) -> bool:
    """``smell`` is ``of`` or one of its ancestors in this member's database."""
    db = sqlite3.connect(
        f"file:{os.path.join(data_dir, 'stack.sqlite3')}?mode=ro", uri=True, timeout=10
    )
    try:
        current: Optional[str] = of
        while current is not None:
            if current == smell:
                return True
            row = db.execute("SELECT parent FROM cheeses WHERE smell = ?", (current,)).fetchone()
            current = row[0] if row else None
        return False
    finally:
        db.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (sqlite3.Error, TypeError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_two_groups_mine_apart_then_converge_on_the_branch_with_more_work(tmp_path, procs) -> None:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    netem = netem_available()
    bits = calibrated_bits()
    network = make_network("partition", bits=bits, timestamp=int(time.time()) - 10**5)
    network_file = str(tmp_path / "network.json")
    with open(network_file, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    data: Dict[int, str] = {i: str(tmp_path / f"m{i}" / "data") for i in MEMBERS}
    started: List[Proc] = []
    try:
        build_topology(netem)
        for i in MEMBERS:
            options = [
                "--network",
                network_file,
                "--data-dir",
                data[i],
                "--interface",
                f"10.77.0.{i}",
                "--port",
                str(PORT),
                "--api-port",
                "24332",
                "--miner-port",
                "24333",
                "--peers",
                "3",
            ]
            for j in MEMBERS:
                if j != i:
                    options += ["--connect", f"10.77.0.{j}:{PORT}"]
            if i in MINERS:
                options += ["--mine", "--mining-workers", "1"]
            args = [
                "ip",
                "netns",
                "exec",
                ns(i),
                sys.executable,
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                f"--logfile=m{i}.log",
                "cheesemember",
                *options,
            ]
            proc = Proc(args, str(tmp_path / f"m{i}"), f"m{i}.out")
            proc.log_path = str(tmp_path / f"m{i}" / f"m{i}.log")
            started.append(proc)
            procs.append(proc)
        for proc in started:
            proc.wait_for("listening on", timeout=60)

        def all_agree(min_height: int = 0) -> bool:
            tips = {db_tip(data[i]) for i in MEMBERS}
            return len(tips) == 1 and next(iter(tips))[1] >= min_height

        wait_for(lambda: all_agree(3), 90, "the four members on one stack of 3 or more cheeses")
        fork_tip, fork_height = db_tip(data[1])

        move_group(GROUP_B, "br1")  # the partition
        started_at = time.monotonic()
        while True:  # group A has two miners, B one: apart until one is clearly ahead
            time.sleep(0.5)
            tips = {i: db_tip(data[i]) for i in MEMBERS}
            best_a = max((tips[i] for i in GROUP_A), key=lambda t: t[1])
            best_b = max((tips[i] for i in GROUP_B), key=lambda t: t[1])
            apart = min(best_a[1], best_b[1]) > fork_height
            if apart and (abs(best_a[1] - best_b[1]) >= 3 or time.monotonic() - started_at > 90):
                break
        assert apart, f"both groups mined apart: {tips}"
        assert not is_ancestor(data[1], best_b[0], best_a[0]), "group A saw group B's cheeses"
        heavier, lighter = (best_a, best_b) if best_a[1] > best_b[1] else (best_b, best_a)
        if heavier[1] == lighter[1]:
            pytest.skip(f"after 90 s apart the groups had mined exactly as much ({tips})")

        move_group(GROUP_B, "br0")  # joined again

        def converged() -> bool:
            tip = db_tip(data[1])[0]
            return all_agree() and all(is_ancestor(data[i], heavier[0], tip) for i in MEMBERS)

        wait_for(
            converged,
            120,
            f"every member on the heavier branch (through {heavier[0][:12]} at {heavier[1]})",
        )
        final_tip = db_tip(data[1])[0]
        for i in MEMBERS:
            assert not is_ancestor(data[i], lighter[0], final_tip), (
                "the lighter branch should be abandoned"
            )
        print(
            f"bits {bits}, "
            f"netem {'on' if netem else 'unavailable (no sch_netem): no delay or loss'}; "
            f"fork at {fork_height}, heavier {heavier[1]}, lighter {lighter[1]}"
        )
    finally:
        for proc in started:
            proc.stop()
        teardown()
    leftover = ip("netns", "list").stdout
    assert TAG not in leftover
