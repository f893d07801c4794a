"""A run spread over worker processes (``cheesecoin simulate --workers K``).

Conservative parallel discrete-event simulation: member ``i`` runs in worker
``i % K``; every worker builds the same world from the seed (the tracker's
registry, the miners' draws, every member's identity) and runs its own
members' code. A connection between members of two workers is cut in the
middle (``cheesecoin.sim.crosslink``): whatever one worker's member does
reaches another worker's member one latency later at the earliest, so the
workers run windows of the shortest latency of ``--latency`` and, at the end
of each, exchange what they made in it (``cheesecoin.sim.exchange``). Nothing
exchanged is due inside the window just run, so each worker's member code
sees exactly what it would see alone.

What every worker does alike (so their draws of the one seeded random stay
the same): start every member (a member another worker runs is only marked
present and registered with the tracker), find every cheese (only the
miner's worker builds it), churn. What each does for its own members alone:
their timers, dials, tracker requests, and the figures about them, which the
hub (worker 0) gathers at the end: arrivals, bytes, reorganisations, the
links at each cheese found (for its shortest paths), each worker's best
stack. Once every cheese is found, the workers compare their members' tips at
each simulated second and stop together.

A parallel run is deterministic (the same options, seed and ``--workers``
give the same figures) but it is not the same run as ``--workers 1``: events
due at the same simulated moment run in another order. Payments, a selfish
pool and a partition need the whole network in one process and are refused.
"""

from __future__ import annotations

from array import array
from collections import Counter
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError

from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.crosslink import CONNECT, DATA, FIN, RST, SYN, CrossPipe, CrossTransport, Item
from cheesecoin.sim.exchange import Channel, WorkerFailed, run_workers
from cheesecoin.sim.figures import shortest_paths
from cheesecoin.sim.graph import Edges
from cheesecoin.sim.link import Pipe
from cheesecoin.sim.member import SimMember
from cheesecoin.sim.world import Simulation, arrival_slots_for, limit_slots


def run_parallel(
    config: SimConfig,
    progress: Optional[Callable[[dict], None]] = None,
    progress_every: float = 10.0,
) -> Tuple["ParallelSimulation", dict]:
    """Run ``config`` over ``config.workers`` processes; returns the hub's simulation
    (with every worker's figures gathered into it) and the figures."""

    def make_and_run(worker: int, channel: Channel) -> Tuple["ParallelSimulation", dict]:
        sim = ParallelSimulation(config, worker, channel)
        figures = sim.run(progress if worker == 0 else None, progress_every)
        return sim, figures

    return run_workers(config.workers, make_and_run)


class ParallelSimulation(Simulation):
    """One worker's share of a parallel run (worker 0, the hub, reports the figures)."""

    def __init__(self, config: SimConfig, worker: int, channel: Channel) -> None:
        super().__init__(config)
        self.worker = worker
        self.workers = config.workers
        self.channel = channel
        self.window = min(1.0, config.latency[0] / 1000.0)  # the shortest latency
        self._ports += worker  # (then in steps of ``workers``: unique in the run)
        self.outboxes: List[List[Item]] = [[] for _ in range(self.workers)]
        self.cross: Dict[int, CrossTransport] = {}  # connection -> this worker's end
        self.dials: Dict[int, Tuple[SimMember, SimMember, Any, Deferred]] = {}
        self._dial_ids = 0
        # Every cheese found, in order (every worker): (at, miner, present)
        self.finds: List[Tuple[float, int, bytes]] = []
        self.my_finds: Dict[int, str] = {}  # find number -> smell, this worker's miners
        self.edge_log: List[Dict[int, Edges]] = []  # per find: own members whose links changed
        self._edges: Dict[int, Edges] = {}
        self._tips: List[Any] = []  # each worker's last control record
        self._best: Any = None  # the run's best stack, once gathered (the hub)

    # -- who runs what --------------------------------------------------------------------------

    def owns(self, member: SimMember) -> bool:
        return member.index % self.workers == self.worker

    def worker_of(self, member: SimMember) -> int:
        return member.index % self.workers

    def ship(self, dest: int, item: Item) -> None:
        self.outboxes[dest].append(item)

    def _next_port(self) -> int:
        self._ports += self.workers
        return self._ports

    # -- connections across workers --------------------------------------------------------

    def dial(self, client: SimMember, address: Tuple[str, int], factory: Any) -> Deferred:
        server = self.by_address.get(address)
        if server is None or server is client or self.owns(server):
            return super().dial(client, address, factory)
        d: Deferred = Deferred()
        self._dial_ids += 1
        self.dials[self._dial_ids] = (client, server, factory, d)
        at = self.clock.now + self.latency(client.index, server.index)
        self.ship(self.worker_of(server), (at, SYN, self._dial_ids, (client.index, server.index)))
        return d

    def _receive(self, inbox: List[Item]) -> None:
        """What the other workers shipped in the window just run, each due later."""
        clock = self.clock
        now = clock.now
        for at, kind, conn, payload in inbox:
            if kind == DATA:
                end = self.cross.get(conn)
                if end is not None:
                    end.arrive(at, payload)
            elif kind == CONNECT:
                self._connected(at, conn, *payload)
            elif kind == SYN:
                client, server = (self.members[i] for i in payload)
                clock.callLater(max(0.0, at - now), self._accept_remote, client, server, conn)
            elif kind in (FIN, RST):
                clock.callLater(max(0.0, at - now), self._far_end_closed, conn)

    def _far_end_closed(self, conn: int) -> None:
        end = self.cross.get(conn)
        if end is not None:
            end.far_end_closed()

    def _accept_remote(self, client: SimMember, server: SimMember, dial_id: int) -> None:
        """A dial from another worker's member has reached ``server`` (``_accept``)."""
        lat = self.latency(client.index, server.index)
        back = self.worker_of(client)
        if not (server.alive and client.alive):
            self.ship(back, (self.clock.now + lat, CONNECT, 0, (dial_id, 0, True)))
            return
        port = self._next_port()
        client_addr, server_addr = (client.host, port), server.address
        server_proto = server.manager.factory.buildProtocol(IPv4Address("TCP", *client_addr))
        server_t = self._end(server, client, lat, port, back, server_addr, client_addr)
        self.ship(
            back, (self.clock.now + lat, CONNECT, port, (dial_id, port, server_proto is None))
        )
        if server_proto is None:
            server_t._lost(ConnectionRefusedError)
            return
        server_t.protocol = server_proto
        server_proto.makeConnection(server_t)

    def _end(
        self,
        member: SimMember,
        remote: SimMember,
        lat: float,
        conn: int,
        dest: int,
        host: Tuple[str, int],
        peer: Tuple[str, int],
    ) -> CrossTransport:
        """This worker's end of connection ``conn`` between ``member`` and ``remote``."""
        out = CrossPipe(self, lat, (member, remote), conn, dest)
        inbound = Pipe(self.clock, lat, self._rate, (remote, member), None, None, self.busy)
        end = CrossTransport(self, out, inbound, host, peer)
        end.remote = remote
        self.cross[conn] = end
        return end

    def _connected(self, at: float, conn: int, dial_id: int, port: int, refused: bool) -> None:
        """The server's answer to one of our dials (due at ``at``)."""
        client, server, factory, d = self.dials.pop(dial_id)
        delay = max(0.0, at - self.clock.now)
        if refused:
            self.clock.callLater(delay, d.errback, ConnectionRefusedError())
            return
        lat = self.latency(client.index, server.index)
        client_addr = (client.host, port)
        end = self._end(
            client, server, lat, conn, self.worker_of(server), client_addr, server.address
        )
        self.clock.callLater(delay, self._connect_remote, client, factory, end, d)

    def _connect_remote(
        self, client: SimMember, factory: Any, end: CrossTransport, d: Deferred
    ) -> None:
        # ``_connect``, with ``end`` standing for the server's end too (it is in another
        # worker; a RST or refusal from it has closed ``end``)
        self._connect(client, factory, end, end, d)
        if not end.connected:
            self.cross.pop(end.conn, None)

    # -- cheeses found --------------------------------------------------------------------------

    def arrival_slots(self, smell: str) -> array:
        slots = self.arrivals.get(smell)
        if slots is None:  # a cheese another worker's member found: our slots for it
            slots = self.arrivals[smell] = arrival_slots_for(len(self.members))
        return slots

    def _note_found(self, cheese: Optional[dict], miner: SimMember, present: bytes) -> None:
        now = self.clock.now
        self.edge_log.append(self._edge_changes())
        if cheese is not None:
            self.my_finds[len(self.finds)] = cheese["smell"]
            self.arrival_slots(cheese["smell"])[miner.index] = now
        self.finds.append((now, miner.index, present))

    def _edge_changes(self) -> Dict[int, Edges]:
        """This worker's members whose links changed since the last cheese found: their
        links now, as ``Simulation._limits`` reads them."""
        changes: Dict[int, Edges] = {}
        for member in self.members[self.worker :: self.workers]:
            edges: Edges = self.graph.edges(member) if member.alive else ()
            if self._edges.get(member.index, ()) != edges:
                changes[member.index] = self._edges[member.index] = edges
        return changes

    # -- the windows ----------------------------------------------------------------------------

    def _step(self) -> None:
        """One simulated second: windows of the shortest latency, each followed by the
        exchange; at the second's end, each worker's members' tips."""
        clock, target = self.clock, self.clock.now + 1.0
        while True:
            until = clock.now + self.window
            last = until >= target
            clock.run_until(target if last else until)
            control = self._own_tips() if last else None
            inbox, controls = self.channel.exchange(self.outboxes, control)
            self.outboxes = [[] for _ in range(self.workers)]
            self._receive(inbox)
            if last:
                if len({c[0] for c in controls}) != 1:
                    raise WorkerFailed(
                        f"the workers of the parallel run have drifted apart: {controls}"[:400]
                    )
                self._tips = [c[1] for c in controls]
                return

    def _own_tips(self) -> Tuple[Tuple[int, int, int], List[str]]:
        """What every worker holds alike (cheeses found, members, present ones), checked
        at each second, and the tips of this worker's members once every cheese is found
        (only then does ``_finished`` ask whether they agree)."""
        alike = (self.mined, len(self.finds), sum(m.alive for m in self.members))
        if self.mined < self.config.cheeses:
            return alike, []
        mine = self.members[self.worker :: self.workers]
        return alike, sorted({m.node.stack.tip.smell for m in mine if m.alive})

    def _agreed(self) -> bool:
        return len({tip for tips in self._tips for tip in tips}) == 1

    # -- the end: the hub gathers the figures ---------------------------------------------------

    def figures(self, wall_seconds: float) -> dict:
        payloads = self.channel.gather(self._payload())
        # Each cheese's shortest paths, every worker its share of the cheeses, over the
        # links of all (the hub's merged log of their changes, handed to every worker).
        log = self.channel.share(self._merged_edge_log(payloads) if not self.worker else None)
        shares = self.channel.gather(self._limits_share(log))
        if self.worker:
            return {}
        self._merge(payloads, {k: limits for share in shares for k, limits in share.items()})
        figures = super().figures(wall_seconds)
        figures["workers"] = self.workers
        return figures

    def _payload(self) -> dict:
        mine = [m for m in self.members[self.worker :: self.workers] if m.alive]
        best = max(mine, key=lambda m: (m.node.stack.work, -m.index), default=None)
        return {
            "arrivals": {smell: slots.tobytes() for smell, slots in self.arrivals.items()},
            "my_finds": self.my_finds,
            "edge_log": self.edge_log,
            "bytes": dict(self.bytes_by_type),
            "reorgs": (self.reorgs, self.max_reorg_depth),
            "failures": (self.clock.failures, self.clock.first_failure),
            "best": None
            if best is None
            else (
                best.node.stack.work,
                -best.index,
                best.node.stack.tip.smell,
                best.node.stack.height,
                [node.smell for node in best.node.stack.main],
            ),
        }

    def _merged_edge_log(self, payloads: List[dict]) -> List[Dict[int, Edges]]:
        """Per cheese found: every worker's members whose links changed."""
        merged: List[Dict[int, Edges]] = []
        for k in range(len(self.finds)):
            changes: Dict[int, Edges] = {}
            for p in payloads:
                changes.update(p["edge_log"][k])
            merged.append(changes)
        return merged

    def _limits_share(self, log: List[Dict[int, Edges]]) -> Dict[int, bytes]:
        """The shortest paths from the miner of each cheese found whose number is this
        worker's (k modulo the workers), as ``Simulation._limits`` (slots: ``array``)."""
        edges: Dict[int, Edges] = {}
        share: Dict[int, bytes] = {}
        for k, (changes, (_, miner, present)) in enumerate(zip(log, self.finds)):
            edges.update(changes)
            if k % self.workers != self.worker:
                continue
            share[k] = limit_slots(shortest_paths(miner, edges), len(present)).tobytes()
        return share

    def _merge(self, payloads: List[dict], limits_of: Dict[int, bytes]) -> None:
        """Every worker's records into this (the hub's) ``Report``."""
        workers = self.workers
        self.bytes_by_type = Counter()
        self.reorgs = self.max_reorg_depth = self.clock.failures = 0
        for p in payloads:
            self.bytes_by_type.update(p["bytes"])
            self.reorgs += p["reorgs"][0]
            self.max_reorg_depth = max(self.max_reorg_depth, p["reorgs"][1])
            self.clock.failures += p["failures"][0]
            self.clock.first_failure = self.clock.first_failure or p["failures"][1]
        smells: Dict[int, str] = {}
        for p in payloads:
            smells.update(p["my_finds"])
        self.arrivals, self.found, self.found_order = {}, {}, []
        for k, (at, miner, present) in enumerate(self.finds):
            smell = smells.get(k)
            if smell is None:
                continue
            everyone = len(present)
            slots = arrival_slots_for(everyone)
            for w, p in enumerate(payloads):
                theirs = array("d")
                theirs.frombytes(p["arrivals"].get(smell, b""))
                if len(theirs) >= everyone:
                    slots[w:everyone:workers] = theirs[w:everyone:workers]
            limits = array("d")
            limits.frombytes(limits_of[k])
            self.arrivals[smell] = slots
            self.found[smell] = (at, miner, limits, present)
            self.found_order.append(smell)
        bests = [p["best"] for p in payloads if p["best"] is not None]
        work, _, tip, height, main = max(bests, key=lambda b: (b[0], b[1]))
        main_set = frozenset(main)
        stack = SimpleNamespace(
            work=work, height=height, tip=SimpleNamespace(smell=tip), is_best=main_set.__contains__
        )
        self._best = SimpleNamespace(node=SimpleNamespace(stack=stack))

    def best_member(self) -> Any:
        return self._best if self._best is not None else super().best_member()
