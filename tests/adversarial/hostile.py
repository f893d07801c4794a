"""Helpers of the adversarial suite: fake endpoints for the three protocols,
snapshots of a member's data, and the storm scale."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, List, Tuple

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.mining.port import MinerPortFactory
from cheesecoin.p2p.manager import PeerManager
from cheesecoin.testing.fakes import (  # noqa: F401  (re-exported for the suite)
    ADDR,
    BOB,
    KEY,
    NETWORK,
    NOW,
    Raw,
    addr,
    chain,
    make_member,
    ready_raw,
    refused,
)
from cheesecoin.tracker.server import TrackerFactory


def storm_scale() -> int:
    """CHEESECOIN_STORM_SCALE: how much bigger the storms are (default 1)."""
    try:
        return max(1, int(os.environ.get("CHEESECOIN_STORM_SCALE", "1")))
    except ValueError:
        return 1


def new_clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@dataclass(frozen=True)
class Snapshot:
    """What a member holds: compared before and after hostile input."""

    tip: str
    height: int
    balances: Tuple[Tuple[str, int], ...]
    nonces: Tuple[Tuple[str, int], ...]
    nodes: int
    mempool: Tuple[str, ...]


def snapshot(manager: PeerManager) -> Snapshot:
    stack, mempool = manager.node.stack, manager.node.mempool
    return Snapshot(
        stack.tip.smell,
        stack.height,
        tuple(sorted(stack.ledger.balances.items())),
        tuple(sorted(stack.ledger.nonces.items())),
        len(stack.nodes),
        tuple(sorted(mempool.txs)),
    )


def parse_lines(data: bytes) -> List[dict]:
    return [json.loads(line) for line in data.split(b"\n") if line]


class Endpoint:
    """One connection to a protocol object over a StringTransport."""

    def __init__(self, proto: Any, transport: StringTransport, state: Callable[[], Any]) -> None:
        self.proto, self.transport, self.state = proto, transport, state

    def feed(self, data: bytes) -> List[dict]:
        self.proto.dataReceived(data)
        return self.replies()

    def send(self, msg: Any) -> List[dict]:
        line = msg if isinstance(msg, bytes) else json.dumps(msg).encode("utf-8")
        return self.feed(line + b"\n")

    def replies(self) -> List[dict]:
        data = self.transport.value()
        self.transport.clear()
        return parse_lines(data)

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def member_endpoint(host: str = "10.0.0.9") -> Endpoint:
    """A handshaken peer of a member with 3 cheeses."""
    manager = make_member("aa", new_clock(), chain(3))
    raw = ready_raw(manager, host=host)
    raw.replies()
    return Endpoint(raw.proto, raw.transport, lambda: snapshot(manager))


def tracker_endpoint(host: str = "10.0.0.9") -> Endpoint:
    factory = TrackerFactory(clock=new_clock())
    proto = factory.buildProtocol(addr(host))
    transport = StringTransport(peerAddress=addr(host), hostAddress=addr("10.0.0.1", 24330))
    proto.makeConnection(transport)
    return Endpoint(proto, transport, lambda: sorted(m.address for m in factory.registry.members()))


def miner_endpoint() -> Tuple[Endpoint, MinerPortFactory]:
    stack = CheeseStack(NETWORK, clock=lambda: NOW)
    for cheese in chain(2):
        stack.add_cheese(cheese)
    node = MemberNode(stack, node_id="aa", clock=lambda: NOW)
    factory = MinerPortFactory(node, "cd" * 32, clock=new_clock())
    factory.startFactory()
    proto = factory.buildProtocol(addr("127.0.0.1"))
    transport = StringTransport(peerAddress=addr("127.0.0.1"), hostAddress=addr("127.0.0.1", 24333))
    proto.makeConnection(transport)
    endpoint = Endpoint(proto, transport, lambda: (stack.tip.smell, stack.height, len(stack.nodes)))
    endpoint.replies()  # the first WORK
    return endpoint, factory


ENDPOINTS = {
    "member": member_endpoint,
    "tracker": tracker_endpoint,
    "miner-port": lambda: miner_endpoint()[0],
}


class CountingBuffer(bytearray):
    """A receive buffer that counts the bytes its ``find`` calls scan (work, not time)."""

    scanned = 0

    def find(self, sub: Any, start: int = 0, *rest: Any) -> int:  # type: ignore[override]
        CountingBuffer.scanned += max(0, len(self) - start)
        return super().find(sub, start, *rest)


def member_on(
    network: Any, clock: Clock, cheeses: List[dict] = (), node_id: str = "aa", **kw: Any
) -> PeerManager:
    """Like ``make_member``, on any network, with the stack's clock following ``clock``."""
    from twisted.internet.defer import Deferred

    stack = CheeseStack(network, clock=clock.seconds)
    for cheese in cheeses:
        stack.add_cheese(cheese, check_signatures=False)
    node = MemberNode(stack, node_id=node_id, clock=clock.seconds)
    kw.setdefault("dialer", lambda host, port, factory: Deferred())
    kw.setdefault("target_peers", 0)
    manager = PeerManager(node, reactor=clock, **kw)
    manager.listen_port = 24331
    return manager


def same_chain(a: Snapshot, b: Snapshot) -> bool:
    """Same tip, ledger and mempool (an invalid cheese may still be kept in the tree)."""
    return (a.tip, a.height, a.balances, a.nonces, a.mempool) == (
        b.tip,
        b.height,
        b.balances,
        b.nonces,
        b.mempool,
    )


def mine(parent: dict, miner: str, txs: List[dict] = (), bits: int = 1, **fields: Any) -> dict:
    """A child of ``parent`` with any header fields overridden, its smell and
    proof of work right for what it holds (so only the rule under test breaks)."""
    from cheesecoin.core.cheese import info_hash, preimage_prefix
    from cheesecoin.core.pow import search_nonce

    info = fields.pop("unit_of_information", {"miner": miner, "transactions": list(txs)})
    cheese = {
        "parent_smell": parent["smell"],
        "sequence_number": parent["sequence_number"] + 1,
        "timestamp": parent["timestamp"] + 10,
        "bits": bits,
        "unit_of_information": info,
    }
    cheese.update(fields)
    prefix = preimage_prefix(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        cheese["bits"],
        info_hash(info),
    )
    cheese["nonce"], cheese["smell"] = search_nonce(prefix, cheese["bits"], 0, 2**64)
    return cheese
