"""Connections under attack (after Bitcoin Core's p2p_eviction.py and the
misbehaviour/ban tests): inbound and per-IP caps, eviction that keeps the
useful peers, and misbehaving peers disconnected and not redialled for a
while (banned by IP; loopback closed, never banned). Fake transports, a
task.Clock and a fake dialer.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from hostile import Raw, addr, chain, make_member, new_clock, refused, snapshot
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport

from cheesecoin.p2p import manager as manager_mod
from cheesecoin.p2p import protocol as protocol_mod
from cheesecoin.p2p.manager import PeerManager
from cheesecoin.wire import limits as limits_mod


def test_the_per_ip_cap_holds_below_the_inbound_cap_and_evicts_nobody() -> None:
    manager = make_member("aa", new_clock(), max_inbound=32, max_per_ip=3)
    mine = [Raw(manager, host="198.51.100.1") for _ in range(3)]
    others = [Raw(manager, host=f"198.51.100.{i}") for i in range(2, 6)]
    for _ in range(100):
        assert refused(manager.factory.buildProtocol(addr("198.51.100.1")))
    assert manager.admission.per_ip["198.51.100.1"] == 3 and manager.admission.refused == 100
    assert not any(r.closed for r in mine + others)


def test_a_connection_flood_from_one_address_cannot_push_out_the_others() -> None:
    manager = make_member("aa", new_clock(), max_inbound=8, max_per_ip=2)
    honest = []
    for i in range(8):
        raw = Raw(manager, host=f"198.51.100.{i}")
        raw.hello(node_id=f"{i + 1:02x}")
        honest.append(raw)
    accepted = []
    for _ in range(1000):
        proto = manager.factory.buildProtocol(addr("203.0.113.66"))
        if not refused(proto):
            proto.makeConnection(StringTransport(peerAddress=addr("203.0.113.66")))
            accepted.append(proto)
    # The first newcomer evicts one unprotected honest peer; the second evicts
    # the first (no handshake yet); then the per-IP cap stops the flood.
    assert len(accepted) == 2
    assert sum(r.closed for r in honest) == 1
    assert accepted[0].closing  # the flood's second connection evicted its first


def connect_inbound(
    manager: PeerManager, host: str, node_id: str, clock: Any, age: float = 1.0
) -> Raw:
    clock.advance(age)
    raw = Raw(manager, host=host)
    raw.hello(node_id=node_id)
    raw.replies()
    return raw


def test_eviction_keeps_the_useful_peers() -> None:
    clock = new_clock()
    cheeses = chain(40)
    manager = make_member("aa", clock, cheeses[:1], max_inbound=12, max_per_ip=100)
    peers: Dict[str, Raw] = {}
    for i in range(12):
        peers[f"p{i}"] = connect_inbound(manager, f"198.51.100.{i}", f"{i + 1:02x}", clock)
    # p4..p8 bring us new cheeses (p4 first, p8 last); p9 misbehaves a little.
    for n, name in enumerate(["p4", "p5", "p6", "p7", "p8"]):
        clock.advance(1)
        replies = peers[name].send({"type": "ANNOUNCE", "cheese": cheeses[n + 1]})
        assert not [r for r in replies if r["type"] == "ERROR"]
    peers["p9"].send(b"garbage")
    assert peers["p9"].proto.score == protocol_mod.ERROR_POINTS["bad-json"]
    protected = {
        "p0",
        "p1",
        "p2",
        "p3",  # the four oldest
        "p5",
        "p6",
        "p7",
        "p8",
    }  # the four latest deliverers (p4 delivered earliest)
    # A newcomer evicts the misbehaving peer first.
    clock.advance(1)
    newcomer = manager.factory.buildProtocol(addr("203.0.113.1"))
    newcomer.makeConnection(StringTransport(peerAddress=addr("203.0.113.1")))
    assert [name for name, raw in peers.items() if raw.closed] == ["p9"]
    # A stream of newcomers then evicts its own kind (the newest, handshaken or
    # not), never an honest peer that was here before.
    for k in range(2, 50):
        clock.advance(1)
        previous = newcomer
        newcomer = manager.factory.buildProtocol(addr(f"203.0.113.{k}"))
        newcomer.makeConnection(StringTransport(peerAddress=addr(f"203.0.113.{k}")))
        if k % 2:
            hello_back(newcomer, f"{k + 100:x}")
        assert previous.closing
    assert [name for name, raw in peers.items() if raw.closed] == ["p9"]
    # Among the honest peers, the order of eviction: unproductive and newest
    # first; the protected ones never.
    newcomer.abort()
    inbound = [p for p in manager.connections if not p.outbound and not p.closing]
    order = []
    while True:
        victim = manager.admission.eviction_candidate(inbound)
        if victim is None:
            break
        inbound.remove(victim)
        order += [name for name, raw in peers.items() if raw.proto is victim]
    assert order == ["p11", "p10", "p4"]
    assert {name for name, raw in peers.items() if raw.proto in inbound} == protected


def test_eviction_protects_a_peer_we_are_syncing_from_and_refuses_when_all_are_protected() -> None:
    clock = new_clock()
    cheeses = chain(10)
    manager = make_member("aa", clock, max_inbound=2, max_per_ip=100)
    old = connect_inbound(manager, "198.51.100.1", "01", clock)
    clock.advance(1)
    source = Raw(manager, host="198.51.100.2")
    source.hello(node_id="02", height=10, tip=cheeses[-1]["smell"], work="22")
    assert source.proto.download is not None
    for k in range(5):
        assert refused(manager.factory.buildProtocol(addr(f"203.0.113.{k}")))
    assert not old.closed and not source.closed
    assert manager.admission.refused == 5


def test_a_hostile_newcomer_that_gets_evicted_changes_nothing() -> None:
    clock = new_clock()
    manager = make_member("aa", clock, chain(5), max_inbound=1)
    before = snapshot(manager)
    first = Raw(manager, host="203.0.113.1")
    for k in range(50):  # each unhandshaken newcomer replaces the last
        clock.advance(1)
        raw = Raw(manager, host=f"203.0.113.{k + 2}")
        raw.send(b"junk")
    assert first.closed and snapshot(manager) == before
    assert len([p for p in manager.connections if not p.closing]) == 1


# -- misbehaviour and redialling -------------------------------------------------------------------


class Dialer:
    """Fake outbound connections: every dial connects at once over a StringTransport."""

    def __init__(self) -> None:
        self.dials: List[Tuple[str, int]] = []
        self.transports: Dict[Tuple[str, int], Tuple[Any, StringTransport]] = {}

    def __call__(self, host: str, port: int, factory: Any) -> Deferred:
        self.dials.append((host, port))
        proto = factory.buildProtocol(addr(host, port))
        transport = StringTransport(
            peerAddress=addr(host, port), hostAddress=addr("10.0.0.1", 50000)
        )
        proto.makeConnection(transport)
        self.transports[(host, port)] = (proto, transport)
        return succeed(proto)


def hello_back(proto: Any, node_id: str) -> None:
    proto.dataReceived(
        b'{"type":"HELLO","version":1,"network":"%s","node_id":"%s","port":24331,"height":0,"tip":"%s","work":"2"}\n'
        % (
            proto.host.node.network.smell.encode(),
            node_id.encode(),
            proto.host.node.network.smell.encode(),
        )
    )


def two_outbound_peers(
    bad: Tuple[str, int], good: Tuple[str, int]
) -> Tuple[Any, PeerManager, Dialer]:
    """A member that dialled ``bad`` and ``good`` (both handshaken); then ``bad``
    sends ten junk lines and its connection is lost. The dial log is cleared."""
    clock = new_clock()
    dialer = Dialer()
    manager = make_member("aa", clock, dialer=dialer, target_peers=2)
    manager.add_addresses([{"host": h, "port": p} for h, p in (bad, good)], "tracker")
    assert sorted(dialer.dials) == sorted([bad, good])
    hello_back(dialer.transports[bad][0], "b1")
    hello_back(dialer.transports[good][0], "b2")
    assert len(manager.peers) == 2
    proto, transport = dialer.transports[bad]
    for _ in range(10):
        proto.dataReceived(b"junk\n")
    assert transport.disconnecting
    assert not dialer.transports[good][1].disconnecting  # the other peer stays
    proto.connectionLost(None)
    dialer.dials.clear()
    return clock, manager, dialer


def test_a_misbehaving_outbound_peer_is_banned_and_not_redialled_until_the_ban_ends() -> None:
    bad = ("203.0.113.7", 24331)
    clock, manager, dialer = two_outbound_peers(bad, ("198.51.100.8", 24331))
    assert manager.bans.is_banned("203.0.113.7")
    for _ in range(int(manager_mod.BAN_SECONDS // manager_mod.REFILL_INTERVAL) - 2):
        clock.advance(manager_mod.REFILL_INTERVAL)
        manager.tick()
    assert bad not in dialer.dials
    assert refused(
        manager.factory.buildProtocol(addr("203.0.113.7"))
    )  # not accepted inbound either
    clock.advance(3 * manager_mod.REFILL_INTERVAL)
    manager.tick()
    assert bad in dialer.dials  # the ban is over: a second chance


def test_a_misbehaving_loopback_peer_is_closed_never_banned_and_its_address_rests() -> None:
    bad = ("127.0.0.1", 24400)
    clock, manager, dialer = two_outbound_peers(bad, ("127.0.0.1", 24401))
    assert not manager.bans.banned
    for _ in range(20):
        clock.advance(manager_mod.REFILL_INTERVAL)
        manager.tick()
    assert bad not in dialer.dials
    assert not refused(
        manager.factory.buildProtocol(addr("127.0.0.1"))
    )  # loopback still welcome inbound
    clock.advance(manager_mod.BAN_SECONDS)
    manager.tick()
    assert bad in dialer.dials


def test_unsolicited_peers_cannot_rewrite_the_address_book() -> None:
    """Regression: any PEERS message used to add up to 100 addresses, so one peer
    could replace all 2000 known addresses in 20 lines (an eclipse aid). Now only
    the reply to our own GET_PEERS counts, and only PEERS_PER_REPLY of it."""
    manager = make_member("aa", new_clock(), target_peers=0)
    manager.add_addresses([{"host": "198.51.100.1", "port": 24331}], "tracker")
    raw = Raw(manager, host="203.0.113.5")
    raw.hello()
    raw.replies()
    fake = [{"host": f"203.0.{i // 250}.{i % 250}", "port": 24331} for i in range(2000)]
    for k in range(0, 2000, 100):
        raw.send({"type": "PEERS", "peers": fake[k : k + 100]})
        raw.send({"type": "PEERS", "peers": fake[k : k + 100], "id": 99})
    assert set(manager.addresses.known) == {
        ("198.51.100.1", 24331),
        ("203.0.113.5", 5000),
    }  # the peer itself
    raw.proto.request({"type": "GET_PEERS"})
    [ask] = raw.replies()
    raw.send({"type": "PEERS", "peers": fake[:100], "id": ask["id"]})
    raw.send({"type": "PEERS", "peers": fake[100:200], "id": ask["id"]})  # answered once only
    assert len(manager.addresses.known) == 2 + limits_mod.PEERS_PER_REPLY


def test_an_impostor_claiming_a_connected_peers_node_id_cannot_push_it_out() -> None:
    """Regression: a second inbound connection with the node id of an inbound
    peer replaced it ("the newer wins"), so anyone who learnt a member's node id
    could disconnect it from us at will. A redial from the same address still
    replaces the old connection."""
    manager = make_member("aa", new_clock())
    honest = Raw(manager, host="198.51.100.1")
    honest.hello(node_id="55")
    impostor = Raw(manager, host="203.0.113.9")
    assert impostor.hello(node_id="55") == []
    assert impostor.closed and not honest.closed and manager.peers["55"] is honest.proto
    redial = Raw(manager, host="198.51.100.1", port=40001)
    assert redial.hello(node_id="55")[0]["type"] == "HELLO"
    assert honest.closed and manager.peers["55"] is redial.proto
