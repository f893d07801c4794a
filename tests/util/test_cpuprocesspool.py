"""Worker processes for a sync's signature checks (util/cpuprocesspool.py):
the work runs in another process, its result comes back through
callFromThread, a killed worker fails the call and the next call gets a new
pool, the pool stops with the reactor; a sync falls back to threads."""

from __future__ import annotations

import os
import queue
from typing import Any, List

import pytest
from twisted.internet.defer import succeed

from cheesecoin.core.tx import sign_tx
from cheesecoin.p2p import sync as sync_module
from cheesecoin.testing.chain import mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, chain
from cheesecoin.util import cpuprocesspool
from cheesecoin.util.cores import usable_cores

pytestmark = pytest.mark.skipif(usable_cores() < 2, reason="worker processes need two cores")


class ThreadSafeReactor:
    """callFromThread into a queue the test drains; system event triggers recorded."""

    def __init__(self) -> None:
        self.calls: "queue.Queue[Any]" = queue.Queue()
        self.triggers: List[Any] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.calls.put((f, args))

    def addSystemEventTrigger(self, phase: str, event: str, f: Any, *args: Any) -> None:
        self.triggers.append((phase, event, f, args))

    def run_one(self) -> None:
        f, args = self.calls.get(timeout=60)
        f(*args)

    def shut_down(self) -> None:
        for _phase, _event, f, args in self.triggers:
            f(*args)


def result_of(d: Any) -> Any:
    out: List[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


@pytest.fixture
def reactor():
    r = ThreadSafeReactor()
    yield r
    r.shut_down()


def test_work_runs_in_another_process_and_returns_through_the_reactor(reactor) -> None:
    d = cpuprocesspool.defer_to_processes(os.getpid, reactor=reactor)
    reactor.run_one()
    pid = result_of(d)
    assert isinstance(pid, int) and pid != os.getpid()
    assert [t[:2] for t in reactor.triggers] == [("during", "shutdown")]


def test_a_killed_worker_fails_the_call_and_the_next_call_gets_a_new_pool(reactor) -> None:
    first = cpuprocesspool.process_pool(reactor)
    d = cpuprocesspool.defer_to_processes(os._exit, 3, reactor=reactor)
    reactor.run_one()
    failure = result_of(d)
    assert "Broken" in type(failure.value).__name__
    d = cpuprocesspool.defer_to_processes(os.getpid, reactor=reactor)
    reactor.run_one()
    assert isinstance(result_of(d), int)
    assert cpuprocesspool.process_pool(reactor) is not first


def test_shutdown_drops_the_pool(reactor) -> None:
    pool = cpuprocesspool.process_pool(reactor)
    reactor.shut_down()
    assert cpuprocesspool.process_pool(reactor) is not pool


def test_a_sync_checks_signatures_in_threads_when_the_processes_fail(monkeypatch) -> None:
    cheeses = chain(2, miner=ADDR)
    good = [sign_tx(KEY, BOB, 1, 1, n, "x") for n in range(sync_module.PROCESS_MIN_TXS)]
    bad = dict(sign_tx(KEY, BOB, 1, 1, 0, "y"), amount=2)  # its signature no longer matches
    body = [
        mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, good),
        mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, [bad]),
    ]
    used = []

    def broken(f, *args, reactor):
        used.append("processes")
        return succeed(None).addCallback(lambda _: 1 / 0)

    def threads(f, *args, reactor):
        used.append("threads")
        return succeed(f(*args))

    monkeypatch.setattr(sync_module, "defer_to_processes", broken)
    monkeypatch.setattr(sync_module, "defer_to_cpu", threads)
    monkeypatch.setattr(sync_module, "usable_cores", lambda: 2)
    sync = sync_module.Sync.__new__(sync_module.Sync)
    sync.verify_in_threads, sync.clock = True, None
    assert result_of(sync.verify_signatures(body)) == {0}
    assert used == ["processes", "threads", "processes", "threads"]


def test_workers_run_below_the_reactor_and_start_with_a_sync(reactor) -> None:
    cpuprocesspool.warm_up(reactor, os.getpid)
    d = cpuprocesspool.defer_to_processes(os.nice, 0, reactor=reactor)
    reactor.run_one()
    assert result_of(d) == min(19, os.nice(0) + cpuprocesspool.WORKER_NICENESS)


def _gone(pid: int) -> bool:
    return cpuprocesspool._member_gone(pid)


@pytest.mark.parametrize("how", ["SIGKILL", "exit"])
def test_the_workers_and_their_fork_server_end_with_the_member(how: str, tmp_path) -> None:
    """A member killed with SIGKILL (or one that just exits) leaves no worker
    and no fork server behind: each worker watches the member and ends itself."""
    import subprocess
    import sys
    import time

    out = tmp_path / "pids"
    script = f"""
import os, signal
from cheesecoin.util import cpuprocesspool
class R:
    def addSystemEventTrigger(self, *a): pass
pool = cpuprocesspool.process_pool(R())
jobs = [pool.submit(os.getppid) for _ in range(4)]
servers = {{job.result() for job in jobs}}
with open({str(out)!r}, "w") as f:
    f.write(" ".join(map(str, sorted(set(pool._processes) | servers))))
if {how!r} == "SIGKILL":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(0)
"""
    # Not our pipes: the workers inherit the member's standard streams.
    member = subprocess.run(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    assert member.returncode == (-9 if how == "SIGKILL" else 0)
    pids = [int(p) for p in out.read_text().split()]
    assert len(pids) == 3, pids  # two workers and their fork server
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.1)
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
