"""One simulated member: the real ``MemberNode`` and ``PeerManager``, and what the
simulation notes about it (arrivals of cheeses, reorganisations, bytes by type)."""

from __future__ import annotations

import math
import random
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from cheesecoin.core.memstore import MemoryStore
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.p2p.features import parse_features
from cheesecoin.p2p.manager import REFILL_INTERVAL, PeerManager
from cheesecoin.p2p.sync import STATS_INTERVAL
from cheesecoin.sim.link import SimTransport
from cheesecoin.wire.limits import MEMBER_PORT, PING_INTERVAL


class _QuietLogger(Logger):
    """A Logger that drops every event (a simulated member's log lines)."""

    def emit(self, level: Any, format: Optional[str] = None, **kwargs: Any) -> None:
        pass

    def failure(self, format: str, failure: Any = None, level: Any = None, **kwargs: Any) -> None:
        pass


_QUIET = _QuietLogger(namespace="cheesecoin.sim.member")


class SharedBodyStore(MemoryStore):
    """A member's in-memory store whose cheese bodies are shared by every member
    of the run: a cheese (one smell, the same bytes) is held once however many
    members store it. The stack never changes a stored body. Ten thousand
    members each holding their own decoded copy of every cheese would be most
    of a run's memory."""

    def __init__(self, shared: Dict[str, dict]) -> None:
        super().__init__()
        self.shared = shared

    def commit(
        self, added: List[Tuple[Any, dict]], invalid: List[Tuple[str, str]], tip: Optional[str]
    ) -> None:
        shared = self.shared
        bodies = [(node, shared.setdefault(node.smell, cheese)) for node, cheese in added]
        super().commit(bodies, invalid, tip)


def features_of(config: Any, index: int) -> Tuple[str, ...]:
    """What member ``index`` lists in its HELLO: --features, or its turn of the test mix."""
    mix = config.feature_mix
    return parse_features(mix[index % len(mix)] if mix else config.features)


class SimMember:
    """One member: the real node and peer manager, and its bookkeeping."""

    def __init__(self, world: Any, index: int, miner_address: str) -> None:
        # ``world`` is the Simulation (cheesecoin.sim.world), which imports this module.
        self.world = world
        self.index = index
        self.host = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
        self.address = (self.host, MEMBER_PORT)
        self.miner_address = miner_address
        self.alive = False
        self.joined_at = 0.0
        self.left_at: Optional[float] = None
        self.timers: List[Any] = []
        rng = world.rng
        store = SharedBodyStore(world.bodies)
        stack = CheeseStack(world.network, store=store, clock=world.clock.seconds)
        self.node = MemberNode(
            stack, clock=world.clock.seconds, node_id="%032x" % rng.getrandbits(128)
        )
        self.manager = PeerManager(
            self.node,
            world.clock,
            target_peers=world.config.peers,
            dialer=self.dial,
            rng=random.Random(rng.getrandbits(64)),
            features=features_of(world.config, index),
        )
        self.manager.listen_port = MEMBER_PORT
        # A thousand members logging each cheese would be most of the run; the
        # figures say what happened.
        self.manager.log = _QUIET  # the manager's every part too
        self.manager.add_peer_source(self)  # (bytes sent are counted by the links, by type)
        # Simulated CPU (--verify-us): validating a cheese keeps the member busy
        # until ``busy_until``; its links send nothing earlier and hand it nothing
        # earlier (one CPU per member, cheesecoin.sim.link, which reads the world's
        # array of these times).
        if world.busy is not None:
            assert len(world.busy) == index  # (members are made in the order of their index)
            world.busy.append(0.0)
        self.submit_uncharged = self.node.submit_cheese
        if world.cpu:
            self.node.submit_cheese = self.submit_cheese  # type: ignore[method-assign]
        self.node.cheese_listeners.append(self.on_accepted)
        self.node.tip_listeners.append(self.on_tip)
        self.node.tx_listeners.append(self.on_tx)
        self._last_tracker_ask = -1e18

    @property
    def busy_until(self) -> float:
        """When this member is done validating what it has (0: never busy)."""
        busy = self.world.busy
        return busy[self.index] if busy is not None else 0.0

    @busy_until.setter
    def busy_until(self, when: float) -> None:
        busy = self.world.busy
        if busy is not None:  # (only a run with simulated CPU time sets it)
            busy[self.index] = when

    # -- the member's view of the world ---------------------------------------------------

    def submit_cheese(
        self,
        cheese: Any,
        source: Any = None,
        check_signatures: bool = True,
        ihash: Optional[str] = None,
    ) -> Any:
        """The node's ``submit_cheese``, charged its simulated CPU time first."""
        world = self.world
        if world.cpu:
            now = world.clock.now
            start = self.busy_until if self.busy_until > now else now
            self.busy_until = start + world.cheese_cost(cheese)
        return self.submit_uncharged(cheese, source, check_signatures, ihash)

    def on_accepted(self, result: Any, source: Any) -> None:
        now = self.world.clock.now
        if self.busy_until > now:
            now = self.busy_until  # it has the cheese once validated
        index = self.index
        for smell in result.accepted:
            arrived = self.world.arrival_slots(smell)
            # (a member that joined after the cheese was found has no slot: not counted)
            if arrived is not None and index < len(arrived) and math.isnan(arrived[index]):
                arrived[index] = now

    def on_tx(self, tx_id: str, tx: dict, source: Any) -> None:
        self.world.tx_figures.holds(self.index, (tx_id,))

    def on_tip(self, result: Any, source: Any) -> None:
        figures = self.world.tx_figures
        if figures.followed and result.connected:  # payments it got in a cheese first
            figures.holds_any(self.index, self.node.stack.tx_index.__contains__)
        if result.disconnected:
            self.world.reorgs += 1
            self.world.max_reorg_depth = max(self.world.max_reorg_depth, len(result.disconnected))

    def request_peers(self) -> None:
        """The peer manager wants more members: ask the tracker (one round trip)."""
        self.world.clock.callLater(
            2 * self.world.tracker_latency(self), self.world.send_peers, self
        )

    def dial(self, host: str, port: int, factory: Any) -> Deferred:
        return self.world.dial(self, (host, port), factory)

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        world = self.world
        self.alive = True
        world.graph.came_or_went()
        self.joined_at = world.clock.now
        world.by_address[self.address] = self
        world.clock.callLater(2 * world.tracker_latency(self), world.register, self)
        runs_here = world.owns(self)  # (a parallel run's other workers draw the same offsets)
        for interval, call in (
            (PING_INTERVAL, self.manager.ping_all),
            (STATS_INTERVAL, self.manager.compare_stacks),
            (REFILL_INTERVAL, self.manager.tick),
        ):
            # What the member's TimerServices do, without a Deferred per tick.
            first = world.rng.uniform(0, interval)
            if runs_here:
                slot = len(self.timers)
                self.timers.append(world.clock.callLater(first, self._repeat, slot, call, interval))

    def _repeat(self, slot: int, call: Any, interval: float) -> None:
        if not self.alive:
            return
        self.timers[slot] = self.world.clock.callLater(interval, self._repeat, slot, call, interval)
        call()

    def stop(self) -> None:
        """The member leaves: its connections drop, the tracker forgets it."""
        world = self.world
        self.alive = False
        world.graph.came_or_went(self)
        self.left_at = world.clock.now
        world.by_address.pop(self.address, None)
        world.registry.unregister(self.index)
        for timer in self.timers:
            if timer.active():
                timer.cancel()
        for proto in list(self.manager.connections):
            if isinstance(proto.transport, SimTransport):
                proto.transport.abortConnection()
