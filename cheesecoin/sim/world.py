"""``Simulation``: N real members on one virtual clock (docs/protocol.md section 9).

Each member is the real code: a ``MemberNode`` over an in-memory
``CheeseStack`` and ``Mempool``, a ``PeerManager`` with its
``MemberProtocol`` connections (handshake and ready states, sync, relay),
driven by the timers a running member has (PING, STATS, dialling). Only the
outside is simulated:

- time (``HeapClock``) and TCP (``link``: latency per pair of members drawn
  from the ``--latency`` range, each direction a queue at ``--bandwidth``);
- the tracker: the real ``TrackerRegistry``, spoken to one round trip away
  (a member registers when it starts, and asks for members when the peer
  manager wants more, as over the real tracker link);
- mining: cheeses are found as a Poisson process of mean spacing S over the
  whole network, each by a miner drawn with its share of the hash power. That
  is the same process as every miner drawing its own exponential time (mean
  S / share) and drawing again at each new tip: exponential races are
  memoryless, and the first of them is exponential with the summed rate. The
  cheese is real: a template of that miner's node, with a nonce that meets the
  network's (low, fixed) bits;
- payments: ``--txs-per-cheese`` per mean spacing, real signed transactions
  from a few payer keys (the miners' rewards go to them), each entered at its
  payer's home member. A signature checked once in the process is not checked
  again (``core.signature.SignatureCache``); every other rule each member runs itself.

One seeded ``random.Random`` drives everything, so the same options give the
same figures; ``cheesecoin.sim.report`` reads them at the end.
"""

from __future__ import annotations

import math
import random
import time
from array import array
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError, TCPTimedOutError

from cheesecoin.core.cheese import mine_blue_cheese, network_from_blue_cheese
from cheesecoin.core.errors import InvalidTx
from cheesecoin.core.node import MINED
from cheesecoin.core.pow import search_nonce
from cheesecoin.core.signature import SignatureCache, use_signature_cache
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.mining.templates import job_for, make_template
from cheesecoin.sim.clock import HeapClock
from cheesecoin.sim.collector import RunCollector
from cheesecoin.sim.config import CHEESE_US, SimConfig
from cheesecoin.sim.figures import shortest_paths
from cheesecoin.sim.graph import LinkGraph
from cheesecoin.sim.link import Pipe, SimTransport
from cheesecoin.sim.member import SimMember
from cheesecoin.sim.report import START, Report
from cheesecoin.sim.selfish import SelfishPool
from cheesecoin.sim.txfigures import TxFigures
from cheesecoin.tracker.registry import TrackerRegistry
from cheesecoin.wire.limits import MEMBER_PORT, PEERS_PER_REPLY

WARMUP = 30.0  # seconds for the members to find each other before the first cheese
CONNECT_TIMEOUT = 10.0  # a dial into a partition fails after this long
PAYERS = 16
_NOT_YET = (math.nan,)  # a member's slot in ``arrivals`` until it has the cheese
_UNREACHABLE = (math.inf,)  # its slot in a cheese's shortest paths when out of reach
_MASK = (1 << 64) - 1


def arrival_slots_for(everyone: int) -> array:
    """A cheese's ``arrivals`` row: one slot per member of the run, none arrived yet."""
    return array("d", _NOT_YET) * everyone


def limit_slots(paths: Dict[int, float], everyone: int) -> array:
    """A cheese's shortest paths (``shortest_paths``) as one slot per member of the run
    when it was found (inf: out of reach)."""
    limits = array("d", _UNREACHABLE) * everyone
    for index, seconds in paths.items():
        if index < everyone:
            limits[index] = seconds
    return limits


def _mix(x: int) -> int:
    """splitmix64: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Simulation(Report):
    """The members, the tracker, the miners and the links of one run (its figures: ``Report``)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config.check()
        self.rng = random.Random(config.seed)
        self.clock = HeapClock(START)
        self.graph = LinkGraph()  # the members' links, for the propagation limit
        bits = config.bits
        reward = max(100, 10 * config.txs_per_cheese)
        blue = mine_blue_cheese(
            "simulated",
            bits,
            int(START) - 60,
            target_spacing=max(1, round(config.spacing)),
            retarget_interval=0,
            reward=reward,
            max_transactions=max(1000, 2 * config.txs_per_cheese),
            note=f"cheesecoin simulate, seed {config.seed}",
        )
        self.network = network_from_blue_cheese(blue)
        self.registry = TrackerRegistry(
            max_members=10**6, rng=random.Random(self.rng.getrandbits(64))
        )
        self.payers = [
            Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32)) for _ in range(PAYERS)
        ]
        self.payer_addresses = [address_of(k) for k in self.payers]
        self.members: List[SimMember] = []
        self.by_address: Dict[Tuple[str, int], SimMember] = {}
        self.miners: List[SimMember] = []
        self.arrivals: Dict[str, array] = {}  # (see Report)
        self.found: Dict[str, Tuple[float, int, array, bytes]] = {}
        self.found_order: List[str] = []
        self.bytes_by_type: Counter = Counter()
        self.bodies: Dict[str, dict] = {}  # every stored cheese body, shared by the members' stores
        self.reorgs = 0
        self.max_reorg_depth = 0
        self.mined = 0
        self.txs_entered = 0
        self.txs_refused = 0
        self.tx_figures = TxFigures(config.members, lambda: self.clock.now)
        self._tx_limits: Dict[int, Tuple[float, Dict[int, float]]] = {}  # home -> (minute, limits)
        self.last_found_at = 0.0
        self.quiet_at: Optional[float] = None
        self._ports = 40000
        self.signatures = SignatureCache()
        low, high = config.latency
        self._lat_low, self._lat_span = low / 1000.0, (high - low) / 1000.0
        self._rate = config.bandwidth * 1e6 / 8 if config.bandwidth else 0.0
        self._lat_salt = self.rng.getrandbits(64)
        self.group: Dict[int, int] = {}
        # At the end of a partition: each group's best (work, tip) as it heals.
        self.partition_tips: Dict[int, Tuple[int, str]] = {}
        # Simulated CPU time (--verify-us): seconds per payment and per cheese.
        self.cpu = config.verify_us > 0
        # With it, when each member is done validating, by index (SimMember.busy_until)
        self.busy: Optional["array[float]"] = array("d") if self.cpu else None
        self._verify_s, self._cheese_s = config.verify_us / 1e6, CHEESE_US / 1e6
        self.pool: Optional[SelfishPool] = None

    def cheese_cost(self, cheese: Any) -> float:
        """Simulated seconds a member spends validating ``cheese``."""
        try:
            payments = len(cheese["unit_of_information"]["transactions"])
        except (KeyError, TypeError):
            payments = 0  # refused by the validation, at the cost of a cheese
        return self._cheese_s + self._verify_s * payments

    # -- the links ------------------------------------------------------------------------------

    def latency(self, a: int, b: int) -> float:
        """The one-way latency between members a and b (seconds), fixed for the pair."""
        lo, hi = (a, b) if a < b else (b, a)
        u = _mix(self._lat_salt ^ (lo * 1_000_003 + hi)) / 2.0**64
        return self._lat_low + self._lat_span * u

    def tracker_latency(self, member: SimMember) -> float:
        return self.latency(member.index, -1)

    def reachable(self, a: SimMember, b: SimMember) -> bool:
        part = self.config.partition
        if part is None or not part[1] <= self.clock.now - START < part[2]:
            return True
        return self.group.get(a.index) == self.group.get(b.index)

    def dial(self, client: SimMember, address: Tuple[str, int], factory: Any) -> Deferred:
        d: Deferred = Deferred()
        server = self.by_address.get(address)
        if server is None or server is client:
            self.clock.callLater(
                2 * self._lat_low + 0.01, d.errback, ConnectionRefusedError(str(address))
            )
        elif not self.reachable(client, server):
            self.clock.callLater(CONNECT_TIMEOUT, d.errback, TCPTimedOutError(str(address)))
        else:
            self.clock.callLater(
                self.latency(client.index, server.index), self._accept, client, server, factory, d
            )
        return d

    def _accept(self, client: SimMember, server: SimMember, factory: Any, d: Deferred) -> None:
        """The SYN has arrived: the server builds its protocol; the client connects one
        latency later."""
        if not (server.alive and client.alive):
            self.clock.callLater(
                self.latency(client.index, server.index), d.errback, ConnectionRefusedError()
            )
            return
        client_addr, server_addr = (client.host, self._next_port()), server.address
        server_proto = server.manager.factory.buildProtocol(IPv4Address("TCP", *client_addr))
        lat = self.latency(client.index, server.index)
        rule = self.reachable if self.config.partition is not None else None
        c2s = Pipe(
            self.clock, lat, self._rate, (client, server), rule, self.bytes_by_type, self.busy
        )
        s2c = Pipe(
            self.clock, lat, self._rate, (server, client), rule, self.bytes_by_type, self.busy
        )
        client_t = SimTransport(c2s, client_addr, server_addr)
        server_t = SimTransport(s2c, server_addr, client_addr)
        client_t.other, server_t.other = server_t, client_t
        client_t.remote, server_t.remote = server, client
        c2s.receiver, s2c.receiver = server_t, client_t
        self.clock.callLater(lat, self._connect, client, factory, client_t, server_t, d)
        if server_proto is None:
            server_t._lost(ConnectionRefusedError)
            return
        server_t.protocol = server_proto
        server_proto.makeConnection(server_t)

    def _next_port(self) -> int:
        """The client's port of a new connection (unique in the run)."""
        self._ports += 1
        return self._ports

    def _connect(
        self,
        client: SimMember,
        factory: Any,
        client_t: SimTransport,
        server_t: SimTransport,
        d: Deferred,
    ) -> None:
        if not client.alive or not server_t.connected:
            client_t.connected = False
            d.errback(ConnectionRefusedError())
            return
        proto = factory.buildProtocol(client_t.getPeer())
        client_t.protocol = proto
        proto.makeConnection(client_t)
        d.callback(proto)

    # -- the tracker ------------------------------------------------------------------------------

    def register(self, member: SimMember) -> None:
        if member.alive:
            self.registry.register(
                member.index, member.host, MEMBER_PORT, self.clock.now, remote=member.host
            )
            if self.owns(member):
                self.send_peers(member)

    def send_peers(self, member: SimMember) -> None:
        if member.alive:
            peers = [
                m.as_peer() for m in self.registry.sample(excluding=member.index, k=PEERS_PER_REPLY)
            ]
            member.manager.add_addresses(peers, "tracker")

    # -- members -----------------------------------------------------------------------------------

    def add_member(self) -> SimMember:
        index = len(self.members)
        member = SimMember(self, index, self.payer_addresses[index % PAYERS])
        self.members.append(member)
        part = self.config.partition
        if part is not None:
            self.group[index] = 0 if self.rng.random() < part[0] else 1
        return member

    def alive(self) -> List[SimMember]:
        return [m for m in self.members if m.alive]

    def owns(self, member: SimMember) -> bool:
        """Whether this process runs ``member`` (a parallel run's worker runs some of
        them: ``cheesecoin.sim.parallel``); here, every member."""
        return True

    def arrival_slots(self, smell: str) -> Optional[array]:
        """The slots of ``arrivals`` for cheese ``smell`` (None: not one found in the run)."""
        return self.arrivals.get(smell)

    # -- mining ------------------------------------------------------------------------------------

    def _schedule_cheese(self) -> None:
        self.clock.callLater(self.rng.expovariate(1.0 / self.config.spacing), self._find_cheese)

    def _find_cheese(self) -> None:
        pool = self.pool
        if pool is not None and self.rng.random() < pool.alpha:
            miner, node = pool.member, pool.private  # the pool mines on its private tip
        else:
            miners = [m for m in self.miners if m.alive]
            if not miners:
                self._schedule_cheese()
                return
            miner = miners[int(self.rng.random() * len(miners))]
            node = miner.node
        now = self.clock.now
        self.mined += 1
        self.last_found_at = now
        present = bytes(m.alive for m in self.members)
        cheese = self._mine(miner, node) if self.owns(miner) else None
        self._note_found(cheese, miner, present)
        if cheese is not None:
            if pool is not None and miner is pool.member:
                pool.mined(cheese)
            else:
                if pool is not None:
                    pool.honest_found(cheese["parent_smell"])
                miner.node.submit_cheese(cheese, MINED)
        if self.mined < self.config.cheeses:
            self._schedule_cheese()
        elif pool is not None:
            pool.publish_rest()

    @staticmethod
    def _mine(miner: SimMember, node: Any) -> dict:
        """A real cheese on ``node``'s tip, paying ``miner``: its template and a nonce."""
        job = job_for(0, make_template(node, miner.miner_address))
        nonce, _ = search_nonce(job.prefix, job.bits, 0, 2**63)
        if nonce is None:  # 2**63 nonces at the low bits of a simulation: never
            raise RuntimeError("no nonce meets the simulated bits")
        return job.complete(nonce)

    def _note_found(self, cheese: Optional[dict], miner: SimMember, present: bytes) -> None:
        """Record a cheese just found: its slots in ``arrivals`` and ``found``."""
        assert cheese is not None  # every member is this process's
        # One slot per member of the run so far (a few bytes each: at 10,000 members
        # and 360 cheeses, dicts and sets of them would be half a gigabyte).
        everyone = len(self.members)
        now = self.clock.now
        arrivals = self.arrivals[cheese["smell"]] = arrival_slots_for(everyone)
        arrivals[miner.index] = now
        limits = limit_slots(self._limits(miner), everyone)
        self.found[cheese["smell"]] = (now, miner.index, limits, present)
        self.found_order.append(cheese["smell"])

    def _limits(self, source: SimMember) -> Dict[int, float]:
        """The latency-weighted shortest path (seconds) from ``source`` to every member, now."""
        edges = {m.index: self.graph.edges(m) for m in self.members if m.alive}
        return shortest_paths(source.index, edges)

    # -- payments ----------------------------------------------------------------------------------

    def _schedule_tx(self) -> None:
        if self.config.txs_per_cheese and self.mined < self.config.cheeses:
            self.clock.callLater(
                self.rng.expovariate(self.config.txs_per_cheese / self.config.spacing),
                self._enter_tx,
            )

    def _enter_tx(self) -> None:
        self._schedule_tx()
        payer = int(self.rng.random() * PAYERS)
        home = self.members[(payer * 7919) % len(self.members)]
        if not home.alive:
            return
        address = self.payer_addresses[payer]
        if home.node.mempool.spendable(address) < 2:
            return
        to = self.payer_addresses[(payer + 1 + int(self.rng.random() * (PAYERS - 1))) % PAYERS]
        tx = sign_tx(self.payers[payer], to, 1, 1, home.node.mempool.pending_nonce(address))
        try:
            home.node.submit_tx(tx, "api")
            self.txs_entered += 1
        except InvalidTx:
            self.txs_refused += 1
            return
        self.tx_figures.entered(txid(tx), home.index, self._limits_from(home))

    def _limits_from(self, home: SimMember) -> Dict[int, float]:
        """``_limits`` of a payment's home member, computed at most once a simulated minute."""
        minute = self.clock.now // 60
        cached = self._tx_limits.get(home.index)
        if cached is None or cached[0] != minute:
            cached = self._tx_limits[home.index] = (minute, self._limits(home))
        return cached[1]

    # -- churn and late joiners --------------------------------------------------------------------

    def _schedule_churn(self) -> None:
        rate = self.config.churn * self.config.members / 3600.0
        if rate > 0:
            self.clock.callLater(self.rng.expovariate(rate), self._churn)

    def _churn(self) -> None:
        if self.mined >= self.config.cheeses:
            return
        alive = self.alive()
        if self.pool is not None:  # the pool stays for the whole run
            alive = [m for m in alive if m is not self.pool.member]
        leaving = alive[int(self.rng.random() * len(alive))]
        leaving.stop()
        if leaving in self.miners:
            self.miners.remove(leaving)
        newcomer = self.add_member()
        if self.config.miners is None or len(self.miners) < self.config.miners:
            self.miners.append(newcomer)
        newcomer.start()
        self._schedule_churn()

    # -- running -----------------------------------------------------------------------------------

    def run(
        self, progress: Optional[Callable[[dict], None]] = None, progress_every: float = 10.0
    ) -> dict:
        """Run to the end; returns the figures of docs/protocol.md section 9 (and more)."""
        previous = use_signature_cache(self.signatures)
        wall = time.perf_counter()
        # Millions of small objects live for the whole run: the cyclic garbage
        # collector looks at them only when collector.py says.
        with RunCollector(WARMUP) as collector:
            try:
                return self._run(collector, wall, progress, progress_every)
            finally:
                use_signature_cache(previous)

    def _run(
        self,
        collector: RunCollector,
        wall: float,
        progress: Optional[Callable[[dict], None]],
        progress_every: float,
    ) -> dict:
        self._set_up()
        last_report = time.perf_counter()
        while True:
            self._step()
            collector.tick(self.clock.now - START)
            if progress is not None and time.perf_counter() - last_report >= progress_every:
                last_report = time.perf_counter()
                progress(self._progress(last_report - wall))
            if self._finished():
                return self.figures(time.perf_counter() - wall)

    def _set_up(self) -> None:
        """The members, the miners and the first timers of a run."""
        config = self.config
        first = config.members - config.late_joiners
        for _ in range(config.members):
            self.add_member()
        order = list(range(first))
        self.rng.shuffle(order)
        miner_count = config.miners if config.miners is not None else config.members
        self.miners = [
            self.members[i] for i in sorted(self.rng.sample(range(config.members), miner_count))
        ]
        if config.selfish is not None:  # the first member is the pool; it is not an honest miner
            self.pool = SelfishPool(self, self.members[0], config.selfish, config.selfish_peers)
            self.miners = [m for m in self.miners if m.index != 0] or self.members[1:2]
        for i in range(first):
            self.clock.callLater(self.rng.uniform(0, 5.0), self.members[i].start)
        late_at = WARMUP + config.cheeses * config.spacing / 2
        for i in range(first, config.members):
            self.clock.callLater(late_at + self.rng.uniform(0, 5.0), self.members[i].start)
        self.clock.callLater(WARMUP, self._schedule_cheese)
        self.clock.callLater(WARMUP, self._schedule_tx)
        self.clock.callLater(WARMUP, self._schedule_churn)
        if config.partition is not None:
            self.clock.callLater(config.partition[2], self._note_partition_tips)

    def _step(self) -> None:
        """One simulated second."""
        self.clock.advance(1.0)

    def _progress(self, wall_seconds: float) -> dict:
        return {
            "simulated_seconds": round(self.clock.now - START),
            "wall_seconds": round(wall_seconds, 1),
            "cheeses_mined": self.mined,
            "cheeses": self.config.cheeses,
        }

    def _finished(self) -> bool:
        """Whether the run is over: every cheese found and the members agreeing (or the
        quiet limit passed without agreement)."""
        if self.mined < self.config.cheeses:
            return False
        if self._agreed():
            self.quiet_at = self.clock.now
            return True
        return self.clock.now - self.last_found_at > self.config.quiet_limit
