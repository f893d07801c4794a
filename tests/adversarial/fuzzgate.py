"""The fuzz gate's harness (issue 26): one member driven on protocol fakes
through a long random storm of valid, malformed and adversarial messages of
every type it handles, from several peers at once, beside an honest member
that holds a longer stack; then checks (``test_fuzz_gate.py``).

Peers: hand-driven ones over ``StringTransport`` (inbound and outbound,
features on or off, claiming more work than they have, some that never
answer a request), and one honest member (a real ``PeerManager`` linked by
``iosim`` pumps, ``cheesecoin.testing.fakes.Net``). One ``task.Clock``
drives everything, with the member's timers as the tap sets them.

Message types come from the code: every ``msg_`` handler of the connection
states (``cheesecoin.p2p.states``); a handler that only hands its message
to ``protocol.resolve`` or ``remote_error`` is a reply type, and which reply
answers which request is learnt by asking the member once (``probe``).
"""

from __future__ import annotations

import gc
import json
import random
import time
import traceback
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import fuzzchecks
import fuzzshapes as shapes
import fuzztls
import fuzzworld
from fuzzpeers import Adversary, LogCatcher, handled_types, reply_types
from hostile import member_on
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, LoopingCall
from twisted.python.failure import Failure

from cheesecoin.core.cheese import compact_announcement
from cheesecoin.core.tx import txid
from cheesecoin.p2p.manager import FEATURES, REFILL_INTERVAL, PeerManager
from cheesecoin.p2p.protocol import REQUEST_TIMEOUT
from cheesecoin.p2p.sync import STATS_INTERVAL
from cheesecoin.testing.fakes import NETWORK, NOW, Net
from cheesecoin.wire.limits import PING_INTERVAL

MAX_ADVERSARIES = 8
BOOK_ADDRESSES = 3000  # heard of before the storm (the book keeps what its tables hold)
SAMPLE_LINES = 200  # lines of each type (in and out) kept for the json.loads calibration
SAMPLE_MAX_LINE = 65536  # longer lines are not kept (memory); json.loads costs alike per byte
MAX_SLOW_WRITES = 3  # writes over the CPU bound that end the storm early (each may take seconds)
TIMERS = "(timers, honest peer)"  # the CPU bucket of clock advances and the honest link
FLOODS = ("GET_MEMPOOL", "GET_TXS", "GET_PEERS", "ANNOUNCE_COMPACT", "INV", "GET_COMPACT")
COLLECT_EVERY = 200  # storm steps between two garbage collections
CONVERGE_SECONDS = 600  # after the storm: the member must hold the honest stack within this
SETTLE_SECONDS = 200  # after the attackers left: every download, rebuild and request ends
FRESH_SECONDS = 10  # a new cheese from the honest member, held back by a liar's announcement


class Run:
    """One seeded storm against one member, its phases and its measurements."""

    def __init__(self, seed: int, member_features: Tuple[str, ...], steps: int) -> None:
        self.seed, self.steps = seed, steps
        self.rng = random.Random(seed)
        self.world = fuzzworld.world()
        self.clock = Clock()
        self.clock.advance(NOW)
        self.types = sorted(handled_types())
        self.replies = reply_types()
        self.errors: List[str] = []  # exceptions that escaped to the caller (dataReceived, timers)
        self.bounds: Dict[str, str] = {}  # bounds broken during the run: the first detail of each
        self.cpu: Dict[str, float] = defaultdict(float)
        self.bytes_seen: Dict[str, int] = defaultdict(int)  # in (fed) and out (written), per bucket
        self.count: Dict[str, int] = defaultdict(int)
        self.samples: Dict[str, List[bytes]] = defaultdict(list)
        self.seen_lines: Dict[str, int] = defaultdict(int)
        self.sampler = random.Random(seed ^ 0x5A5A)  # apart from the storm's own random source
        self.written = 0  # bytes the member wrote to any peer so far
        self.slow_writes: List[str] = []  # single writes over the CPU bound
        self.cut_short: Optional[int] = None  # the step the storm ended at, if it ended early
        self.last_kind = TIMERS
        self.answers: Dict[str, str] = {}  # request type -> its reply type, learnt by probe()
        self.inbound_claims: Dict[Tuple[str, int], int] = {}
        self.adversaries: List[Adversary] = []
        self.seq = 0
        self.bad_txids = {txid(t) for t in self.world.bad_sig}
        key = fuzztls.member_key(seed)  # a tls run's (by the seed; section 5.3), else None
        self.member = self._member(self.world.member_chain, fuzztls.node_id(key), member_features)
        fuzztls.install(self.member, key)
        self.member.traffic = self._traffic
        for tx in self.world.mempool:
            self.member.node.submit_tx(tx)
        self.fill_address_book()
        self.honest = self._member(self.world.chain, "bb", FEATURES)
        self.net = Net(self.clock)
        self.loops: List[LoopingCall] = []
        for manager in (self.member, self.honest):  # the timers of cheesecoin.member.tap
            for interval, call in (
                (PING_INTERVAL, manager.ping_all),
                (STATS_INTERVAL, manager.compare_stacks),
                (REFILL_INTERVAL, manager.tick),
            ):
                loop = LoopingCall(call)
                loop.clock = self.clock
                loop.start(interval, now=False).addErrback(self._loop_failed)
                self.loops.append(loop)

    def _member(self, cheeses: List[dict], node_id: str, features: Tuple[str, ...]) -> PeerManager:
        return member_on(
            NETWORK,
            self.clock,
            cheeses,
            node_id=node_id,
            features=features,
            rng=random.Random(self.rng.getrandbits(32)),
        )

    def fill_address_book(self) -> None:
        """A member that has run a while has heard of many members: BOOK_ADDRESSES
        addresses, ten at a time from as many sources (PEERS replies, the tracker)."""
        rng = random.Random(self.seed ^ 0xB00C)
        for _ in range(BOOK_ADDRESSES // 10):
            source = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1"
            entries = [
                {
                    "host": "%d.%d.%d.%d" % tuple(rng.randint(1, 254) for _ in range(4)),
                    "port": 24331,
                }
                for _ in range(10)
            ]
            self.member.add_addresses(entries, source)

    def _loop_failed(self, failure: Failure) -> None:
        self.errors.append("a timer failed:\n" + failure.getTraceback())

    def _traffic(self, direction: str, kind: str, size: int) -> None:
        if direction == "out":
            self.written += size
        if direction == "out" or self.last_kind == TIMERS:  # fed bytes are counted by timed()
            self.bytes_seen[self.last_kind] += size

    # -- measuring and guarding ------------------------------------------------------------------

    def guard(self, what: str, call: Any) -> None:
        try:
            call()
        except Exception:
            self.errors.append(f"{what} raised:\n{traceback.format_exc()}")

    def timed(
        self, kind: str, peer: Adversary, call: Any, size: int, data: bytes, lines: int
    ) -> None:
        """Run ``call`` (feeding ``size`` bytes of ``kind``), its CPU measured and
        charged to ``kind``, with the bytes it made the member write."""
        self.last_kind = kind
        written = self.written
        start = time.process_time()
        self.guard(f"feeding {kind} from peer {peer.n}", call)
        seconds = time.process_time() - start
        self.cpu[kind] += seconds
        self.bytes_seen[kind] += size
        self.count[kind] += lines
        if seconds > fuzzchecks.WRITE_FLOOR:  # judged alone, against json.loads of its own bytes
            mine = peer.transport.value() if peer.transport is not None else b""
            why = fuzzchecks.write_over(seconds, kind, data, mine, self.written - written, lines)
            if why:
                self.slow_writes.append(why)
        peer.read()
        self.last_kind = TIMERS

    def sample(self, kind: str, raw: bytes) -> None:
        """Keep some lines of each type (in and out) for the calibration."""
        if len(raw) > SAMPLE_MAX_LINE:
            return
        kept = self.samples[kind]
        self.seen_lines[kind] += 1
        if len(kept) < SAMPLE_LINES:
            kept.append(raw)
        else:  # a reservoir: every line of the type equally likely to be kept
            i = self.sampler.randrange(self.seen_lines[kind])
            if i < SAMPLE_LINES:
                kept[i] = raw

    def advance(self, seconds: float) -> None:
        """Time passes (timers, timeouts) and the honest link moves its bytes."""
        self.last_kind = TIMERS
        start = time.process_time()
        self.guard("the clock", lambda: self.clock.advance(seconds))
        self.guard("the honest link", self.net.flush)
        self.cpu[TIMERS] += time.process_time() - start
        self.count[TIMERS] += 1
        for peer in self.adversaries:
            peer.read()

    def check_bounds(self, thorough: bool = False) -> None:
        broken = fuzzchecks.bounds_broken(self.member, self.inbound_claims, thorough)
        broken.update(fuzztls.broken(self))
        for what, detail in broken.items():
            self.bounds.setdefault(what, detail)

    # -- the peers -------------------------------------------------------------------------------

    def new_adversary(
        self,
        inbound: Optional[bool] = None,
        claim: Optional[str] = None,
        liar: Optional[bool] = None,
    ) -> Adversary:
        rng = self.rng
        self.seq += 1
        every = [f for f in FEATURES if f != "tls"]  # a StringTransport cannot start TLS
        features = rng.choice([every, every, [], ["headers"], ["mempool", "compact"]])
        cls, features = fuzztls.choose(self, features) if inbound is None else (Adversary, features)
        peer = cls(
            self,
            self.seq,
            rng.random() < 0.7 if inbound is None else inbound,
            features,
            claim or rng.choice(["huge", "more", "less"]),
            rng.random() < 0.35 if liar is None else liar,
        )
        self.adversaries.append(peer)
        before: List[Tuple[bytes, str]] = []
        hello = None
        if inbound is None and rng.random() < 0.15:  # the handshake state gets messages too
            ctx = fuzzworld.Ctx(self.world, rng, self.member)
            for kind in rng.sample(self.types, rng.randint(1, 3)):
                before.append((shapes.make(kind, ctx), kind))
        if inbound is None and rng.random() < 0.1:  # a HELLO of the generator: odd, mutated...
            hello = shapes.make("HELLO", fuzzworld.Ctx(self.world, rng, self.member))
        peer.connect(before, hello)
        return peer

    def live(self) -> List[Adversary]:
        return [p for p in self.adversaries if not p.lost]

    def link_honest(self) -> None:
        if self.rng.random() < 0.5:
            self.net.link(self.honest, self.member)  # it dials us
        else:
            self.net.link(self.member, self.honest)

    # -- the phases ------------------------------------------------------------------------------

    def probe(self) -> None:
        """Ask the member one valid request of each type: which reply type answers it."""
        peer = self.new_adversary(inbound=True, claim="less", liar=True)
        for kind in self.types:
            if kind in self.replies or kind == "HELLO":
                continue
            ctx = fuzzworld.Ctx(self.world, self.rng, self.member)
            gen = shapes.GENERATORS.get(kind)
            msg = dict(gen(ctx) if gen is not None else {"type": kind}, id=424242)
            peer.transport.clear()
            self.guard(
                "probe " + kind,
                lambda m=msg: peer.proto.dataReceived(json.dumps(m).encode() + b"\n"),
            )
            for raw in peer.transport.value().split(b"\n"):
                reply = json.loads(raw) if raw else {}
                if reply.get("id") == 424242 and reply.get("type") != "ERROR":
                    self.answers[kind] = reply["type"]
            peer.transport.clear()
        peer.leave()
        self.adversaries.remove(peer)
        self.inbound_claims.pop((peer.host, peer.port), None)

    def act(self, peer: Adversary) -> None:
        """One message from ``peer`` (a flood of some types): an answer to one of
        the member's requests to it, or any message of any type."""
        rng = self.rng
        ctx = fuzzworld.Ctx(self.world, rng, self.member, ids=list(peer.requests))
        if peer.requests and not peer.liar and rng.random() < 0.6:
            ctx.request = peer.requests.pop(rng.choice(list(peer.requests)))
            kind = self.answers.get(ctx.request["type"])
            if kind is None or rng.random() < 0.1:
                kind = rng.choice(sorted(self.replies))
        else:
            kind = rng.choice(self.types)
        flood = kind in FLOODS and rng.random() < 0.15
        if flood and rng.random() < 0.5:  # many in one write
            lines = shapes.flood(kind, ctx)
            peer.send(b"\n".join(lines), kind, len(lines))
            return
        for _ in range(20 if flood else 1):
            line = shapes.make(kind, ctx)
            score = peer.proto.score
            waiting = ctx.request is not None and ctx.request.get("id") in peer.proto.pending
            peer.send(line, kind)
            if waiting and ctx.request.get("type") == "GET_TXS":  # a late reply is ignored
                self.check_bad_txs_charged(peer, ctx.request, line, score)

    def check_bad_txs_charged(
        self, peer: Adversary, request: dict, line: bytes, score: int
    ) -> None:
        """Finding 9: an invalid transaction we asked for costs its sender points,
        as a pushed TX does, whichever message brought it."""
        try:
            reply = json.loads(line)
        except ValueError:
            return
        txs = reply.get("transactions") if isinstance(reply, dict) else None
        asked = set(request.get("txids") or ())
        if (
            reply.get("type") != "TXS"
            or not isinstance(txs, list)
            or reply.get("id") != request["id"]
        ):
            return  # not a reply to that request (a mutated id, say): ignored by the member
        bad = [t for t in txs if isinstance(t, dict) and txid_or_none(t) in self.bad_txids & asked]
        if bad and peer.proto.score <= score and not peer.lost and not peer.proto.closing:
            self.bounds.setdefault(
                "invalid transactions in a TXS we asked for cost the sender nothing (finding 9)",
                f"{len(bad)} of {len(txs)} in a reply to {request.get('type')} "
                f"{'with' if 'smell' in request else 'without'} smell",
            )

    def storm(self) -> None:
        """The adversaries' storm; the honest member joins at a random step."""
        rng = self.rng
        honest_at = rng.randrange(max(1, self.steps // 2))
        for _ in range(3):
            self.new_adversary()
        for step in range(self.steps):
            if len(self.slow_writes) >= MAX_SLOW_WRITES:
                self.cut_short = step
                if step <= honest_at:
                    self.link_honest()
                break
            if step == honest_at:
                self.link_honest()
            roll = rng.random()
            live = self.live()
            if roll < 0.03 and len(live) < MAX_ADVERSARIES:
                self.new_adversary()
            elif roll < 0.04 and live:
                rng.choice(live).leave()
            elif roll < 0.14:
                self.advance(rng.choice([0.5, 1, 3, 10, REQUEST_TIMEOUT]))
            elif live:
                self.act(rng.choice(live))
            self.check_bounds()
            if step % COLLECT_EVERY == 0:
                self.check_bounds(thorough=True)
                gc.collect()

    def converge(self) -> bool:
        """Finding 5: the storm is over; three fresh liars claiming huge work join
        (a PING every 20 s keeps them, they answer nothing, nor do the storm's
        liars), and the honest member quietly gets LATE_CHEESES more (no
        announcement: the member learns of them by comparing stacks). True once
        the member holds the honest tip, within CONVERGE_SECONDS."""
        for inbound in (True, True, False):
            self.new_adversary(inbound=inbound, claim="huge", liar=True)
        stack = self.honest.node.stack
        for cheese in self.world.late:
            self.guard("the honest stack grows", lambda c=cheese: stack.add_cheese(c))
        for second in range(CONVERGE_SECONDS):
            if second % 20 == 0:
                for peer in self.live():
                    if peer.liar:
                        peer.send(b'{"type":"PING"}', "PING")
            self.advance(1)
            self.check_bounds()
            if self.member.node.stack.tip.smell == stack.tip.smell:
                return True
        return False

    def fresh(self) -> Optional[str]:
        """Finding 6: a liar announces the honest member's new cheese first, listing a
        txid it never supplies; the honest member announces it too. The member must
        hold it within FRESH_SECONDS (another announcer is asked in parallel).
        Returns what went wrong, or None."""
        new = self.world.new_cheese
        liar = next((p for p in self.live() if p.liar), None)
        if liar is None:
            liar = self.new_adversary(inbound=True, claim="less", liar=True)
        msg = compact_announcement(new)
        msg["txids"] = msg["txids"] + [fuzzworld._hex(self.rng)]
        liar.send(json.dumps(msg).encode(), "ANNOUNCE_COMPACT")
        self.guard("the honest member's new cheese", lambda: self.honest.node.submit_cheese(new))
        for _ in range(FRESH_SECONDS):
            self.advance(1)
            self.check_bounds()
            if self.member.node.stack.tip.smell == new["smell"]:
                return None
        return (
            f"a new cheese announced first by a peer that never supplies it, then by the "
            f"honest member, was not ours within {FRESH_SECONDS} s (finding 6): height "
            f"{self.member.node.stack.height}, the honest one {self.honest.node.stack.height}"
        )

    def settle(self) -> None:
        """The attackers leave; time passes with the honest member alone."""
        for peer in self.adversaries:
            peer.leave()
        for _ in range(SETTLE_SECONDS):
            self.advance(1)
            self.check_bounds()

    def finish(self) -> None:
        """Every connection goes, the timers stop, garbage is collected (an unhandled
        error in a Deferred is logged when its Deferred is collected)."""
        for proto in list(self.member.connections) + list(self.honest.connections):
            self.guard("abort", proto.abort)
            self.guard(
                "connectionLost", lambda p=proto: p.connectionLost(Failure(ConnectionDone()))
            )
        for loop in self.loops:
            if loop.running:
                loop.stop()
        self.net.pumps.clear()
        self.guard("the clock", lambda: self.clock.advance(3 * REQUEST_TIMEOUT))
        gc.collect()

    def cpu_failures(self) -> Tuple[List[str], str]:
        """What passed the CPU bound (by type, then by single write), and every type's figure."""
        per_byte = fuzzchecks.json_cost_per_byte(self.samples)
        over = [
            f"CPU per byte of {kind}: {why}"
            for kind, why in fuzzchecks.cpu_over(
                self.cpu, self.bytes_seen, self.count, per_byte
            ).items()
        ]
        over += ["CPU per byte: " + why for why in self.slow_writes]
        if self.cut_short is not None:
            over.append(
                f"(the storm was cut short at step {self.cut_short} of {self.steps}: "
                f"{MAX_SLOW_WRITES} writes over the CPU bound)"
            )
        return over, fuzzchecks.cpu_table(self.cpu, self.bytes_seen, self.count, per_byte)


def txid_or_none(tx: dict) -> Any:
    try:
        return txid(tx)
    except (TypeError, ValueError, KeyError):
        return None


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector runs only between steps (every COLLECT_EVERY
    steps of ``Run.storm``, and in ``Run.finish``), never inside a measured write:
    a collection's pause is not the message's cost."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_gate(seed: int, member_features: Tuple[str, ...], steps: int) -> Tuple[List[str], Run, str]:
    """One whole run; (what failed, the run, its CPU table)."""
    failures: List[str] = []
    with LogCatcher() as logged, collector_paused():
        run = Run(seed, member_features, steps)
        run.probe()
        run.storm()
        converged = run.converge()
        if not converged:
            failures.append(
                f"the member did not reach the honest stack within {CONVERGE_SECONDS} s "
                "after the storm: "
                f"height {run.member.node.stack.height} of {run.honest.node.stack.height}, "
                f"{len([p for p in run.live() if p.liar])} liars connected; sync status: "
                f"{run.member.sync.status()}"
            )
        if converged:
            late = run.fresh()
            if late:
                failures.append(late)
        run.check_bounds(thorough=True)
        run.settle()
        run.check_bounds(thorough=True)
        if converged and run.member.node.stack.tip.smell != run.honest.node.stack.tip.smell:
            failures.append("the member left the honest stack after the attackers left")
        failures += [
            f"not ended after the attackers left: {what}"
            for what in fuzzchecks.not_ended(run.member)
        ]
        run.finish()
        over, table = run.cpu_failures()
    failures += [f"bound broken: {what} ({detail})" for what, detail in run.bounds.items()]
    failures += over
    failures += ["escaped: " + e for e in run.errors[:5]]
    failures += ["logged: " + e for e in logged.events[:5]]
    if len(logged.events) > 5:
        failures.append(f"... and {len(logged.events) - 5} more logged failures")
    return failures, run, table
