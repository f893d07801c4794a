"""The member's Prometheus metrics (docs/protocol.md section 7, ``GET /metrics``).

``MemberMetrics`` keeps its own ``CollectorRegistry`` (one per member, so
that several members in one process do not mix), listens to the node for
cheeses accepted and refused, reorganisations and arrivals, and is the
traffic hook of every member connection (messages and bytes by type and
direction). Height, peers, mempool and hash rate are read at each scrape.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.node import MINED  # our own cheeses: their arrival delay is not a network's
from cheesecoin.core.tree import AddResult
from cheesecoin.web.interfaces import MetricsNode

# Message types counted by name; anything else a peer sends is counted as "other"
# (a label per arbitrary string would let a peer grow our memory without end).
KNOWN_TYPES = frozenset(
    "HELLO STATS STATS_REPLY GET_CHEESE CHEESE GET_CHEESES CHEESES GET_PEERS PEERS PING PONG "
    "ANNOUNCE TX ERROR GET_HEADERS HEADERS GET_TXS TXS GET_MEMPOOL MEMPOOL ANNOUNCE_COMPACT "
    "CONSENSUS".split()
)


class MemberMetrics:
    """The metrics of one member, on a registry of its own."""

    def __init__(self, node: MetricsNode) -> None:
        self.node = node
        self.registry = registry = CollectorRegistry()
        Gauge("cheesecoin_height", "Height of the best stack", registry=registry).set_function(
            lambda: node.stack.height
        )
        Gauge("cheesecoin_peers", "Handshaken member connections", registry=registry).set_function(
            lambda: len(node.peers_info())
        )
        Gauge(
            "cheesecoin_mempool_transactions", "Transactions in the mempool", registry=registry
        ).set_function(lambda: len(node.mempool))
        Gauge(
            "cheesecoin_hashrate",
            "SHA1 evaluations per second of this member's miner",
            registry=registry,
        ).set_function(lambda: float(node.miner.hashrate()) if node.miner is not None else 0.0)
        self.accepted = Counter(
            "cheesecoin_cheeses_accepted", "Cheeses accepted (any branch)", registry=registry
        )
        self.refused = Counter(
            "cheesecoin_cheeses_refused",
            "Cheeses refused, by the rule they broke",
            ["rule"],
            registry=registry,
        )
        self.reorgs = Counter(
            "cheesecoin_reorgs", "Reorganisations of the best stack", registry=registry
        )
        self.reorg_depth = Histogram(
            "cheesecoin_reorg_depth",
            "Cheeses abandoned by a reorganisation",
            buckets=(1, 2, 3, 5, 10, 20, 50, 100, 1000),
            registry=registry,
        )
        self.messages = Counter(
            "cheesecoin_messages",
            "Member protocol messages",
            ["type", "direction"],
            registry=registry,
        )
        self.bytes = Counter(
            "cheesecoin_bytes", "Member protocol bytes", ["direction"], registry=registry
        )
        # The labelled children of the traffic counters (a labels() lookup cost as
        # much as decoding a small message); bounded by KNOWN_TYPES x 2 directions.
        self._traffic: Dict[Tuple[str, str], Tuple[Counter, Counter]] = {}
        self.arrival = Histogram(
            "cheesecoin_cheese_arrival_seconds",
            "Seconds from a cheese's timestamp to its arrival here",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 3600),
            registry=registry,
        )
        node.cheese_listeners.append(self.on_accepted)
        node.refusal_listeners.append(self.on_refused)
        node.tip_listeners.append(self.on_tip)

    def on_accepted(self, result: AddResult, source: Any) -> None:
        self.accepted.inc(len(result.accepted))
        if source == MINED:
            return
        now = self.node.clock()
        for smell in result.accepted:
            known = self.node.stack.nodes.get(smell)
            if known is not None:
                self.arrival.observe(max(0.0, now - known.timestamp))

    def on_refused(self, error: InvalidCheese, source: Any) -> None:
        self.refused.labels(rule=str(error.rule)).inc()

    def on_tip(self, result: AddResult, source: Any) -> None:
        if result.disconnected:
            self.reorgs.inc()
            self.reorg_depth.observe(len(result.disconnected))

    def traffic(self, direction: str, kind: str, size: int) -> None:
        """The traffic hook of a connection: one message of ``kind``, ``size`` bytes."""
        kind = kind if kind in KNOWN_TYPES else "other"
        children = self._traffic.get((direction, kind))
        if children is None:
            children = self._traffic[(direction, kind)] = (
                self.messages.labels(type=kind, direction=direction),
                self.bytes.labels(direction=direction),
            )
        children[0].inc()
        children[1].inc(size)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
