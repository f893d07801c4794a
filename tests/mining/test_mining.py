"""Mining (issue 5): the nonce search, templates, the feed, searchers and MiningService."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from typing import Any, List, Optional, Tuple

import pytest
import pytest_twisted
from procs import vector
from twisted.internet import defer, task
from twisted.internet.task import deferLater

from cheesecoin.core.cheese import (
    compute_smell,
    info_hash,
    meets_pow,
    network_from_blue_cheese,
    preimage_prefix,
)
from cheesecoin.core.node import MemberNode
from cheesecoin.core.pow import NONCE_LIMIT, search_nonce, search_nonce_python, split_range
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx
from cheesecoin.mining.searchers import HashMeter, ProcessSearcher, ThreadSearcher
from cheesecoin.mining.service import MiningService
from cheesecoin.mining.templates import Job, TemplateFeed, job_for, make_job, make_template
from cheesecoin.mining.worker import worker_command
from cheesecoin.testing.chain import BASE_TIME, key_from_seed, make_network, mine_child
from cheesecoin.util.cputhreadpool import StopToken, cpu_pool, defer_to_cpu

MINER = address_of(key_from_seed("miner"))
PREFIX = "ab" * 20 + ":7:1795300000:12:" + "cd" * 20 + ":"


def make_node(
    bits: int = 8, max_transactions: int = 1000, now: Optional[float] = None, **kw: Any
) -> MemberNode:
    """A member node on a fresh test network; its clock is fixed if ``now`` is given."""
    network = make_network(bits=bits, max_transactions=max_transactions, **kw)
    clock = (lambda: now) if now is not None else time.time
    return MemberNode(CheeseStack(network, clock=clock), clock=clock)


def extend(
    node: MemberNode, count: int = 1, miner: str = MINER, txs: Optional[List[dict]] = None
) -> List[dict]:
    """Mine ``count`` cheeses on the node's tip (in this thread) and submit them."""
    out = []
    for _ in range(count):
        tip = node.stack.get_cheese(node.stack.tip.smell)
        timestamp = max(tip["timestamp"], int(node.clock()))
        cheese = mine_child(
            tip, node.stack.next_bits(node.stack.tip), miner, txs or [], timestamp=timestamp
        )
        node.submit_cheese(cheese, source="test")
        out.append(cheese)
        txs = None
    return out


def naive_search(
    prefix: str, bits: int, start: int, end: int
) -> Tuple[Optional[int], Optional[str]]:
    for n in range(start, end):
        smell = hashlib.sha1((prefix + str(n)).encode()).hexdigest()
        if meets_pow(smell, bits):
            return n, smell
    return None, None


# -- the nonce search ------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 4, 8, 11])
@pytest.mark.parametrize("start", [0, 9_990, 99_995, 10**12 - 3, NONCE_LIMIT - 5_000])
def test_search_matches_the_definition(bits: int, start: int) -> None:
    for length in (1, 17, 20_000):
        got = search_nonce(PREFIX, bits, start, start + length, check_every=7)
        assert got == naive_search(PREFIX, bits, start, min(start + length, NONCE_LIMIT))


def test_found_nonce_makes_a_valid_smell() -> None:
    for bits in (8, 12, 16):
        nonce, smell = search_nonce(PREFIX, bits, 0, NONCE_LIMIT)
        assert (
            nonce is not None and smell == hashlib.sha1((PREFIX + str(nonce)).encode()).hexdigest()
        )
        assert meets_pow(smell, bits)


def test_search_respects_the_stop_flag_and_reports_progress() -> None:
    done: List[int] = []
    token = StopToken()
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        if len(calls) == 3:
            token.stop()
        return token()

    # The Python search polls every check_every nonces (the native one every ~20 ms:
    # tests/core/test_native_pow.py).
    assert search_nonce_python(PREFIX, 160, 0, NONCE_LIMIT, should_stop, 1000, done.append) == (
        None,
        None,
    )
    assert token.stopped and len(calls) == 3
    assert sum(done) == 3000 and max(done) <= 1000


def test_search_with_a_stopped_token_does_at_most_one_batch() -> None:
    token = StopToken()
    token.stop()
    done: List[int] = []
    assert search_nonce_python(PREFIX, 160, 10**9, NONCE_LIMIT, token, 4096, done.append) == (
        None,
        None,
    )
    assert sum(done) == 4096


def test_split_range_is_disjoint_and_covers() -> None:
    for workers in (1, 2, 3, 7):
        for start in (0, 12345, 2**63):
            parts = split_range(workers, start)
            assert len(parts) == workers
            assert parts[0][0] == start and parts[-1][1] == NONCE_LIMIT
            assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(parts, parts[1:]))


def test_worker_process_searches_restarts_and_exits_on_eof() -> None:
    proc = subprocess.Popen(
        worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None

        def order(msg: dict) -> None:
            proc.stdin.write(json.dumps(msg).encode() + b"\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

        order(
            {"job": 1, "prefix": PREFIX, "bits": 160, "start": 0, "end": NONCE_LIMIT}
        )  # never found
        time.sleep(0.3)
        order(
            {"job": 2, "prefix": PREFIX, "bits": 10, "start": 5000, "end": NONCE_LIMIT}
        )  # replaces job 1
        found = None
        hashes = 0
        while found is None:
            msg = json.loads(proc.stdout.readline())
            if "hashes" in msg:
                hashes += msg["hashes"]
            else:
                found = msg
        assert found["job"] == 2
        assert (found["nonce"], found["smell"]) == search_nonce(PREFIX, 10, 5000, NONCE_LIMIT)
        assert hashes > 0
        proc.stdin.close()
        assert proc.wait(5) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- templates ----------------------------------------------------------------------------


def test_template_is_a_child_of_the_tip_paying_the_miner() -> None:
    node = make_node(bits=8)
    extend(node, 3)
    template = make_template(node, MINER)
    tip = node.stack.tip
    assert set(template) == {
        "parent_smell",
        "sequence_number",
        "timestamp",
        "bits",
        "unit_of_information",
    }
    assert template["parent_smell"] == tip.smell
    assert template["sequence_number"] == tip.height + 1
    assert template["bits"] == node.stack.next_bits(tip)
    assert template["unit_of_information"] == {"miner": MINER, "transactions": []}


def test_template_timestamp_is_now_but_never_before_the_parent() -> None:
    node = make_node(now=BASE_TIME + 1000)
    assert make_template(node, MINER)["timestamp"] == BASE_TIME + 1000
    node = make_node(now=BASE_TIME - 1000)  # a clock behind the Blue Cheese
    assert make_template(node, MINER)["timestamp"] == BASE_TIME


def test_template_bits_follow_the_retarget_vectors() -> None:
    cheeses = vector("retarget-vectors.json")["cheeses"]
    network = network_from_blue_cheese(cheeses[0])
    now = cheeses[-1]["timestamp"] + 10
    node = MemberNode(CheeseStack(network, clock=lambda: now), clock=lambda: now)
    for cheese in cheeses[1:]:
        template = make_template(node, MINER)
        assert template["bits"] == cheese["bits"], cheese["sequence_number"]
        assert template["sequence_number"] == cheese["sequence_number"]
        node.submit_cheese(cheese)
    assert {c["bits"] for c in cheeses} == {8, 11}  # the vectors do retarget up and down


def funded_keys(node: MemberNode, count: int) -> list:
    keys = [key_from_seed(f"payer-{i}") for i in range(count)]
    for key in keys:
        extend(node, 1, miner=address_of(key))
    return keys


def test_template_takes_mempool_txs_by_fee_up_to_max_transactions() -> None:
    node = make_node(bits=4, max_transactions=3)
    a, b = funded_keys(node, 2)
    txs = [
        sign_tx(a, MINER, 1, 1, 0),
        sign_tx(a, MINER, 1, 9, 1),  # high fee, but after a's nonce 0
        sign_tx(b, MINER, 1, 5, 0),
        sign_tx(b, MINER, 1, 2, 1),
    ]
    for tx in txs:
        node.submit_tx(tx)
    template = make_template(node, MINER)
    chosen = template["unit_of_information"]["transactions"]
    assert chosen == node.mempool.select(3) == [txs[2], txs[3], txs[0]]
    job = job_for(1, template)
    nonce, smell = search_nonce(job.prefix, job.bits, 0, NONCE_LIMIT)
    cheese = job.complete(nonce)
    assert cheese["smell"] == smell == compute_smell(cheese)
    before = node.stack.ledger.balance(MINER)
    node.submit_cheese(cheese, source="miner")
    # the reward and the fees go to the miner, plus the amounts paid to it
    assert node.stack.ledger.balance(MINER) - before == 50 + (5 + 2 + 1) + 3
    assert [
        t["fee"] for t in make_template(node, MINER)["unit_of_information"]["transactions"]
    ] == [9]


def test_job_prefix_is_the_preimage_up_to_the_nonce() -> None:
    node = make_node()
    job = make_job(node, MINER, "j1")
    c = job.cheese
    assert job.prefix == preimage_prefix(
        c["parent_smell"],
        c["sequence_number"],
        c["timestamp"],
        c["bits"],
        info_hash(c["unit_of_information"]),
    )
    assert job.work_message() == {
        "type": "WORK",
        "job": "j1",
        "prefix": job.prefix,
        "bits": c["bits"],
        "cheese": c,
    }
    assert "nonce" not in c and "smell" not in c


# -- the feed and the meter ----------------------------------------------------------------------


def test_feed_coalesces_tip_changes_and_tx_bursts() -> None:
    node = make_node(bits=4)
    keys = funded_keys(node, 1)
    clock = task.Clock()
    calls: List[float] = []
    feed = TemplateFeed(node, lambda: calls.append(clock.seconds()), clock, tx_delay=0.5)
    feed.start()
    extend(node, 3)
    assert calls == []
    clock.advance(0)
    assert calls == [0]  # three tip changes, one call
    for i in range(5):
        node.submit_tx(sign_tx(keys[0], MINER, 1, 1, i))
        clock.advance(0.05)
    clock.advance(0.2)  # t = 0.45
    assert calls == [0]
    clock.advance(0.1)
    assert len(calls) == 2  # a burst of txs, one call 0.5 s after the first
    node.submit_tx(sign_tx(keys[0], MINER, 1, 1, 5))
    extend(node)  # a tip change replaces the pending tx call
    clock.advance(0)
    assert len(calls) == 3
    clock.advance(1)
    assert len(calls) == 3
    feed.stop()
    extend(node)
    clock.advance(1)
    assert len(calls) == 3 and not node.tip_listeners and not node.tx_listeners


def test_hash_meter_rate_over_the_window() -> None:
    now = [100.0]
    meter = HashMeter(window=5.0, clock=lambda: now[0])
    assert meter.rate() == 0.0
    now[0] = 101.0
    meter.add(1000)
    assert meter.rate() == 1000.0  # over the one second since start
    now[0] = 105.0
    meter.add(3000)
    assert meter.rate() == 800.0  # 4000 over 5 s
    now[0] = 106.5
    assert meter.rate() == 600.0  # the first sample left the window
    now[0] = 120.0
    assert meter.rate() == 0.0 and meter.total == 4000


# -- stale cheeses are never submitted -------------------------------------------------------------


class RecordingNode:
    """Wraps node.submit_cheese to record what the miner submits and the tip at that moment."""

    def __init__(self, node: MemberNode) -> None:
        self.node = node
        self.submitted: List[Tuple[dict, str]] = []
        real = node.submit_cheese

        def submit(cheese: Any, source: Any = None, check_signatures: bool = True) -> Any:
            if source == "miner":
                self.submitted.append((cheese, node.stack.tip.smell))
            return real(cheese, source, check_signatures)

        node.submit_cheese = submit  # type: ignore[method-assign]


def test_found_cheese_on_an_old_parent_is_dropped() -> None:
    node = make_node(bits=8)
    recorder = RecordingNode(node)
    service = MiningService(node, MINER, workers=1, reactor=task.Clock())
    job = make_job(node, MINER, 1)
    nonce, smell = search_nonce(job.prefix, job.bits, 0, NONCE_LIMIT)
    extend(node)  # someone else's cheese moves the tip
    announced: List[Any] = []
    node.tip_listeners.append(lambda result, source: announced.append(source))
    service._found(job, nonce, smell)
    assert recorder.submitted == [] and announced == [] and node.stack.height == 1
    # on the current tip the same path submits, and the tip listeners hear of it
    job = make_job(node, MINER, 2)
    nonce, smell = search_nonce(job.prefix, job.bits, 0, NONCE_LIMIT)
    service._found(job, nonce, smell)
    assert node.stack.tip.smell == smell and announced == ["miner"] and service.mined == 1


@pytest_twisted.inlineCallbacks
def test_thread_search_stops_when_the_tip_changes():
    from twisted.internet import reactor

    found: List[Any] = []
    searcher = ThreadSearcher(lambda *a: found.append(a), HashMeter(), reactor)
    hard = Job(1, {}, PREFIX, 160)  # never found
    searcher.search(hard)
    yield deferLater(reactor, 0.2, lambda: None)
    assert searcher.busy() == 1
    started = time.monotonic()
    searcher.search(Job(2, {}, PREFIX, 8))  # stops job 1 at once, finds job 2
    for _ in range(100):
        if found and searcher.busy() == 0:
            break
        yield deferLater(reactor, 0.01, lambda: None)
    assert time.monotonic() - started < 0.5
    assert [(job.job_id, nonce) for job, nonce, _ in found] == [
        (2, search_nonce(PREFIX, 8, 0, NONCE_LIMIT)[0])
    ]
    yield searcher.shutdown()
    assert searcher.busy() == 0


@pytest_twisted.inlineCallbacks
def test_mining_races_other_cheeses_without_ever_submitting_a_stale_one():
    from twisted.internet import reactor

    node = make_node(bits=11)
    recorder = RecordingNode(node)
    service = MiningService(node, MINER, workers=1, reactor=reactor)
    service.startService()
    try:
        for _ in range(20):
            extend(node, miner=address_of(key_from_seed("rival")))  # the tip moves under the miner
            yield deferLater(reactor, 0.005, lambda: None)
        yield deferLater(reactor, 0.3, lambda: None)
    finally:
        yield service.stopService()
    assert recorder.submitted, "the miner found nothing"
    for cheese, tip in recorder.submitted:
        assert cheese["parent_smell"] == tip
    assert service.mined == len(recorder.submitted)


# -- the service, for real ----------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest_twisted.inlineCallbacks
def test_service_mines_with_one_thread_and_stops_cleanly():
    from twisted.internet import reactor

    node = make_node(bits=14)
    service = MiningService(node, MINER, workers=1, reactor=reactor)
    assert node.miner is service and not service.mining
    service.startService()
    assert service.mining and isinstance(service.searcher, ThreadSearcher)
    deadline = time.monotonic() + 20
    while node.stack.height < 3 and time.monotonic() < deadline:
        yield deferLater(reactor, 0.05, lambda: None)
    assert node.stack.height >= 3
    assert service.hashrate() > 0
    cheese = node.stack.get_by_height(1)
    assert cheese["unit_of_information"]["miner"] == MINER and meets_pow(cheese["smell"], 14)
    searcher = service.searcher
    yield service.stopService()
    assert not service.mining and searcher.busy() == 0
    team = cpu_pool(reactor)._team
    for _ in range(100):  # the pool marks its thread idle just after handing back the result
        if team.statistics().busyWorkerCount == 0:
            break
        yield deferLater(reactor, 0.01, lambda: None)
    assert team.statistics().busyWorkerCount == 0
    height = node.stack.height
    yield deferLater(reactor, 0.2, lambda: None)
    assert node.stack.height == height and not node.tip_listeners and not node.tx_listeners


@pytest_twisted.inlineCallbacks
def test_service_mines_with_processes_and_leaves_none_behind():
    from twisted.internet import reactor

    node = make_node(bits=14)
    service = MiningService(node, MINER, workers=2, reactor=reactor)
    service.startService()
    searcher = service.searcher
    assert isinstance(searcher, ProcessSearcher)
    pids = [p.transport.pid for p in searcher.procs]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    deadline = time.monotonic() + 30
    while node.stack.height < 3 and time.monotonic() < deadline:
        yield deferLater(reactor, 0.05, lambda: None)
    assert node.stack.height >= 3
    yield deferLater(reactor, 0.3, lambda: None)
    assert service.hashrate() > 0
    yield service.stopService()
    assert searcher.busy() == 0
    assert not any(alive(pid) for pid in pids)


@pytest_twisted.inlineCallbacks
def test_worker_processes_exit_when_their_parent_vanishes():
    """A worker whose stdin closes (its parent died, even by SIGKILL) exits: no orphans."""
    from twisted.internet import reactor

    searcher = ProcessSearcher(2, lambda *a: None, HashMeter(), reactor)
    searcher.search(Job(1, {}, PREFIX, 160))
    yield deferLater(reactor, 0.3, lambda: None)
    pids = [p.transport.pid for p in searcher.procs]
    for proc in searcher.procs:
        proc.transport.closeStdin()  # what the kernel does when the parent dies
    yield defer.DeferredList([p.ended for p in searcher.procs])
    assert not any(alive(pid) for pid in pids)
    yield searcher.shutdown()


@pytest_twisted.inlineCallbacks
def test_reactor_stays_responsive_while_a_thread_mines():
    from twisted.internet import reactor

    searcher = ThreadSearcher(lambda *a: None, HashMeter(), reactor)
    searcher.search(Job(1, {}, PREFIX, 160))
    try:
        yield deferLater(reactor, 0.1, lambda: None)
        late = []
        for _ in range(30):
            started = time.monotonic()
            yield deferLater(reactor, 0.01, lambda: None)
            late.append(time.monotonic() - started)
        assert searcher.meter.total > 0
        assert max(late) < 0.1, late
    finally:
        yield searcher.shutdown()


@pytest_twisted.inlineCallbacks
def test_defer_to_cpu_runs_off_the_reactor_thread():
    import threading

    from twisted.internet import reactor

    name = yield defer_to_cpu(lambda: threading.current_thread().name, reactor=reactor)
    assert name != threading.current_thread().name
