"""Protocol fakes for tests of the member protocol: hand-driven peers over
``StringTransport`` (``Raw``), members linked by ``twisted.test.iosim`` pumps
(``Net``), and a member on a bits-1 test network with a fake clock
(``make_member``). No sockets and no real time."""

from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of
from cheesecoin.p2p.manager import PeerManager
from cheesecoin.p2p.protocol import MemberProtocol
from cheesecoin.testing.chain import ChainBuilder, key_from_seed, make_network
from cheesecoin.wire.lineproto import BusyProtocol


def refused(proto: object) -> bool:
    """Whether buildProtocol turned the connection away (it then gets ERROR busy and a close)."""
    return isinstance(proto, BusyProtocol)


NOW = 2_000_000_000
NETWORK = make_network(name="membertest", bits=1, timestamp=NOW - 10**6)
OTHER_NETWORK = make_network(name="othernet", bits=1, timestamp=NOW - 10**6)
MINER = "ab" * 32
KEY = key_from_seed("member-test")
ADDR = address_of(KEY)
BOB = address_of(key_from_seed("member-test-bob"))


def chain(
    count: int, parent: Optional[dict] = None, miner: str = MINER, note: Optional[str] = None
) -> List[dict]:
    return ChainBuilder(NETWORK).extend(parent or NETWORK.blue_cheese, count, miner, note=note)


def make_member(node_id: str, clock: Clock, cheeses: Sequence[dict] = (), **kw: Any) -> PeerManager:
    stack = CheeseStack(NETWORK, clock=lambda: NOW)
    for cheese in cheeses:
        stack.add_cheese(cheese, check_signatures=False)
    node = MemberNode(stack, node_id=node_id, clock=lambda: NOW)
    kw.setdefault("dialer", lambda host, port, factory: Deferred())
    kw.setdefault("target_peers", 0)
    manager = PeerManager(node, reactor=clock, **kw)
    manager.listen_port = 24331
    return manager


def addr(host: str, port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


class Raw:
    """A hand-driven peer talking to one member over a StringTransport."""

    def __init__(self, manager: PeerManager, host: str = "10.0.0.9", port: int = 40000) -> None:
        self.manager = manager
        self.proto = manager.factory.buildProtocol(addr(host, port))
        assert self.proto is not None
        self.transport = StringTransport(
            peerAddress=addr(host, port), hostAddress=addr("10.0.0.1", 24331)
        )
        self.proto.makeConnection(self.transport)

    def send(self, *msgs: Any) -> List[dict]:
        for msg in msgs:
            line = msg if isinstance(msg, bytes) else json.dumps(msg).encode("utf-8")
            self.proto.dataReceived(line + b"\n")
        return self.replies()

    def replies(self) -> List[dict]:
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.split(b"\n") if line]

    def hello(self, node_id: str = "99", network: str = NETWORK.smell, **extra: Any) -> List[dict]:
        msg = {
            "type": "HELLO",
            "version": 1,
            "network": network,
            "node_id": node_id,
            "port": 5000,
            "height": 0,
            "tip": NETWORK.smell,
            "work": "2",
        }
        msg.update(extra)
        return self.send(msg)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


class Net:
    """Members connected by iosim pumps; ``flush`` moves data until quiet."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pumps: List[iosim.IOPump] = []
        self.links = 0
        self.hosts: dict = {}  # each member has one address

    def host(self, manager: PeerManager) -> str:
        return self.hosts.setdefault(id(manager), f"10.1.{len(self.hosts) + 1}.1")

    def link(
        self, a: PeerManager, b: PeerManager
    ) -> Tuple[MemberProtocol, Optional[MemberProtocol]]:
        """``a`` dials ``b``."""
        self.links += 1
        a_addr = addr(self.host(a), 50000 + self.links)
        b_addr = addr(self.host(b), 24331)
        server = b.factory.buildProtocol(a_addr)
        client = MemberProtocol(a, outbound=True, dial_address=(b_addr.host, b_addr.port))
        if refused(server):
            return client, None
        assert isinstance(server, MemberProtocol)  # what an admitted connection gets
        st = iosim.FakeTransport(server, True, hostAddress=b_addr, peerAddress=a_addr)
        ct = iosim.FakeTransport(client, False, hostAddress=a_addr, peerAddress=b_addr)
        self.pumps.append(iosim.connect(server, st, client, ct, greet=False, clock=self.clock))
        self.flush()
        return client, server

    def flush(self) -> None:
        for _ in range(10000):
            if not any([p.pump(advanceClock=False) for p in self.pumps]):
                return
        raise AssertionError("the network did not settle")


def ready_raw(manager: PeerManager, **kw: Any) -> Raw:
    raw = Raw(manager, **kw)
    raw.hello()
    return raw
