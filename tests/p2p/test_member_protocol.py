"""The member protocol and peer manager (docs/protocol.md section 5) on fake transports.

No sockets and no real time: protocols run over ``StringTransport`` or
``twisted.test.iosim`` pumps, and every timer runs on a ``task.Clock``.
"""

from __future__ import annotations

import json
from typing import Any, List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.tx import sign_tx
from cheesecoin.p2p import manager as manager_mod
from cheesecoin.p2p import protocol as protocol_mod
from cheesecoin.p2p import states as states_mod
from cheesecoin.p2p import sync as sync_mod
from cheesecoin.p2p.manager import PeerManager
from cheesecoin.testing.chain import mine_child
from cheesecoin.testing.fakes import (  # noqa: F401  (the shared fakes and the test network)
    ADDR,
    BOB,
    KEY,
    MINER,
    NETWORK,
    NOW,
    OTHER_NETWORK,
    Net,
    Raw,
    addr,
    chain,
    make_member,
    ready_raw,
    refused,
)
from tests.cases import case, clock_at

# -- handshake -------------------------------------------------------------------------


class HandshakeTests(SynchronousTestCase):
    """HELLO both ways, refusals, and which of two connections is kept."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_request_before_hello_gets_handshake_required_with_id(self) -> None:
        raw = Raw(make_member("aa", self.clock))
        [error] = raw.send({"type": "STATS", "id": 7})
        assert error == {
            "type": "ERROR",
            "code": "handshake-required",
            "message": error["message"],
            "id": 7,
        }
        assert not raw.closed

    def test_accepting_side_answers_hello_with_its_own(self) -> None:
        cheeses = chain(3)
        manager = make_member("aa", self.clock, cheeses)
        raw = Raw(manager)
        hello, stats = raw.hello()
        # stacks are compared on each handshake
        assert stats == {"type": "STATS", "id": stats["id"]}
        assert hello == {
            "type": "HELLO",
            "version": 1,
            "network": NETWORK.smell,
            "node_id": "aa",
            "port": 24331,
            "height": 3,
            "tip": cheeses[-1]["smell"],
            "work": str(4 * 2),
            "features": [
                "headers",
                "compact",
                "mempool",
                "inv",
                "compact-modes",
            ],  # sections 5.1, 5.2
        }
        assert list(manager.peers) == ["99"]
        [error] = raw.hello()
        assert error["code"] == "bad-message"

    def test_wrong_network_is_refused_and_closed(self) -> None:
        raw = Raw(make_member("aa", self.clock))
        [error] = raw.hello(network=OTHER_NETWORK.smell)
        assert error["code"] == "wrong-network"
        assert raw.closed

    def test_connection_to_itself_is_closed(self) -> None:
        manager = make_member("aa", self.clock)
        raw = Raw(manager)
        assert raw.hello(node_id="aa") == []
        assert raw.closed and not manager.peers

    def test_malformed_hello_is_bad_message(self) -> None:
        for field, value in [
            ("node_id", "XYZ"),
            ("node_id", 5),
            ("port", 0),
            ("height", -1),
            ("tip", "00"),
            ("work", "12a"),
            ("version", "1"),
        ]:
            with case(field=field, value=value):
                raw = Raw(make_member("aa", self.clock))
                [error] = raw.hello(**{field: value})
                assert error["code"] == "bad-message"
                assert not raw.proto.ready

    def test_simultaneous_dial_keeps_the_connection_opened_by_the_smaller_node_id(self) -> None:
        self.simultaneous_dial("11", "22")

    def test_simultaneous_dial_keeps_it_whichever_side_has_the_smaller_node_id(self) -> None:
        self.simultaneous_dial("22", "11")

    def simultaneous_dial(self, a_id: str, b_id: str) -> None:
        """a and b, with these node ids, dial each other at once."""
        net = Net(self.clock)
        a, b = make_member(a_id, self.clock), make_member(b_id, self.clock)
        # Both dial at once: neither HELLO is answered before both connections exist.
        a_out, b_in = net.link(a, b)
        b_out, a_in = net.link(b, a)
        net.flush()
        assert len(a.peers) == 1 and len(b.peers) == 1
        kept_by_a, kept_by_b = a.peers[b_id], b.peers[a_id]
        smaller = min(a_id, b_id)
        if smaller == a_id:
            assert kept_by_a is a_out and kept_by_b is b_in
        else:
            assert kept_by_a is a_in and kept_by_b is b_out
        assert len(a.connections) == 1 and len(b.connections) == 1

    def test_redial_from_the_same_side_keeps_the_newer_connection(self) -> None:
        net = Net(self.clock)
        a, b = make_member("11", self.clock), make_member("22", self.clock)
        first, _ = net.link(a, b)
        second, _ = net.link(a, b)
        assert a.peers["22"] is second
        assert len(b.peers) == 1 and len(b.connections) == 1


# -- requests --------------------------------------------------------------------------------


class RequestTests(SynchronousTestCase):
    """STATS, GET_CHEESE, GET_CHEESES, PING, GET_PEERS and what is not a request."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_stats(self) -> None:
        cheeses = chain(4)
        raw = ready_raw(make_member("aa", self.clock, cheeses))
        [reply] = raw.send({"type": "STATS", "id": "s1"})
        assert reply == {
            "type": "STATS_REPLY",
            "height": 4,
            "tip": cheeses[-1]["smell"],
            "work": "10",
            "peers": 1,
            "id": "s1",
        }

    def test_get_cheese_by_height_and_smell(self) -> None:
        cheeses = chain(4)
        raw = ready_raw(make_member("aa", self.clock, cheeses))
        [by_height] = raw.send({"type": "GET_CHEESE", "sequence_number": 2, "id": 1})
        assert by_height == {"type": "CHEESE", "cheese": cheeses[1], "id": 1}
        [by_smell] = raw.send({"type": "GET_CHEESE", "smell": cheeses[3]["smell"]})
        assert by_smell == {"type": "CHEESE", "cheese": cheeses[3]}
        [blue] = raw.send({"type": "GET_CHEESE", "sequence_number": 0})
        assert blue["cheese"] == NETWORK.blue_cheese
        for msg in ({"sequence_number": 5}, {"smell": "f" * 40}):
            [error] = raw.send(dict(msg, type="GET_CHEESE", id=9))
            assert (error["code"], error["id"]) == ("not-found", 9)
        for msg in ({}, {"sequence_number": -1}, {"smell": "XYZ"}, {"sequence_number": 1.5}):
            [error] = raw.send(dict(msg, type="GET_CHEESE", id=3))
            assert (error["code"], error["id"]) == ("bad-message", 3)

    def test_get_cheeses_by_range_and_count(self) -> None:
        cheeses = chain(12)
        raw = ready_raw(make_member("aa", self.clock, cheeses))
        [reply] = raw.send({"type": "GET_CHEESES", "from": 3, "count": 4, "id": "r"})
        assert reply == {"type": "CHEESES", "cheeses": cheeses[2:6], "id": "r"}
        [everything] = raw.send({"type": "GET_CHEESES", "from": 0})
        assert everything["cheeses"] == [NETWORK.blue_cheese] + cheeses
        [past_end] = raw.send({"type": "GET_CHEESES", "from": 50})
        assert past_end == {"type": "CHEESES", "cheeses": []}
        for count in (0, 501, "5"):
            [error] = raw.send({"type": "GET_CHEESES", "from": 0, "count": count, "id": 4})
            assert (error["code"], error["id"]) == ("bad-message", 4)
        [error] = raw.send({"type": "GET_CHEESES", "count": 3})
        assert error["code"] == "bad-message"

    def test_get_cheeses_reply_is_the_stored_texts_joined(self) -> None:
        cheeses = chain(3, note="ünïcode")
        raw = ready_raw(make_member("aa", self.clock, cheeses))
        raw.send({"type": "GET_CHEESES", "from": 1, "count": 3, "id": 5})
        raw.proto.dataReceived(b'{"type":"GET_CHEESES","from":1,"count":3,"id":5}\n')
        line = raw.transport.value().rstrip(b"\n")
        texts = [
            json.dumps(c, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for c in cheeses
        ]
        joined = '{"type":"CHEESES","cheeses":[' + ",".join(texts) + '],"id":5}'
        assert line == joined.encode("utf-8")

    def test_get_cheeses_by_locator(self) -> None:
        cheeses = chain(20)
        raw = ready_raw(make_member("aa", self.clock, cheeses))
        locator = [cheeses[9]["smell"], cheeses[5]["smell"], NETWORK.smell]
        [reply] = raw.send({"type": "GET_CHEESES", "locator": locator, "count": 3})
        assert reply["cheeses"] == cheeses[10:13]
        side = chain(2, cheeses[3], miner=BOB)  # not on the best stack: skipped
        [reply] = raw.send(
            {"type": "GET_CHEESES", "locator": [side[-1]["smell"], "e" * 40, cheeses[14]["smell"]]}
        )
        assert reply["cheeses"] == cheeses[15:]
        [reply] = raw.send({"type": "GET_CHEESES", "locator": ["e" * 40], "count": 2})
        assert reply["cheeses"] == cheeses[:2]  # none on the stack: after the Blue Cheese
        for locator in ("x", ["XYZ"], [1], ["e" * 40] * 1001):
            [error] = raw.send({"type": "GET_CHEESES", "locator": locator})
            assert error["code"] == "bad-message"

    def test_get_cheeses_reply_stays_under_4_mib(self) -> None:
        raw = ready_raw(make_member("aa", self.clock, chain(5)))
        big_id = "i" * (4 * 1024 * 1024 - 200)
        raw.proto.dataReceived(
            json.dumps({"type": "GET_CHEESES", "from": 0, "id": big_id}).encode() + b"\n"
        )
        line = raw.transport.value()
        assert len(line.rstrip(b"\n")) <= 4 * 1024 * 1024
        reply = json.loads(line)
        assert reply["id"] == big_id and len(reply["cheeses"]) < 6

    def test_ping_and_get_peers(self) -> None:
        manager = make_member("aa", self.clock)
        one = ready_raw(manager, host="10.0.0.5")
        two = Raw(manager, host="10.0.0.6")
        two.hello(node_id="77", port=6000)
        assert one.send({"type": "PING", "id": 1}) == [{"type": "PONG", "id": 1}]
        [peers] = one.send({"type": "GET_PEERS", "id": 2})
        assert peers == {"type": "PEERS", "peers": [{"host": "10.0.0.6", "port": 6000}], "id": 2}
        assert manager.node.peers_info() == [
            {
                "host": "10.0.0.6",
                "port": 6000,
                "node_id": "77",
                "height": 0,
                "inbound": True,
                "encrypted": False,
            },
            {
                "host": "10.0.0.5",
                "port": 5000,
                "node_id": "99",
                "height": 0,
                "inbound": True,
                "encrypted": False,
            },
        ]

    def test_unknown_type_and_bad_json(self) -> None:
        raw = ready_raw(make_member("aa", self.clock))
        assert raw.send({"type": "FROB", "id": 1})[0]["code"] == "unknown-type"
        assert raw.send(b"{nope")[0]["code"] == "bad-json"


# -- announce, relay, orphans, reorganisations --------------------------------------------------


class AnnounceTests(SynchronousTestCase):
    """ANNOUNCE: relay once, invalid cheeses, orphans, sync on handshake, reorganisations."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_announce_adds_and_relays_once_but_not_back(self) -> None:
        cheeses = chain(2)
        manager = make_member("aa", self.clock, cheeses[:1])
        source = ready_raw(manager, host="10.0.0.5")
        other = Raw(manager, host="10.0.0.6")
        other.hello(node_id="77")
        assert source.send({"type": "ANNOUNCE", "cheese": cheeses[1]}) == []
        assert manager.node.stack.tip.smell == cheeses[1]["smell"]
        assert other.replies() == [{"type": "ANNOUNCE", "cheese": cheeses[1]}]
        # The same cheese again, from anyone: silently ignored, not relayed.
        assert other.send({"type": "ANNOUNCE", "cheese": cheeses[1]}) == []
        assert source.send({"type": "ANNOUNCE", "cheese": cheeses[1]}) == []
        assert other.replies() == []

    def test_invalid_announce_gets_invalid_cheese_and_changes_nothing(self) -> None:
        cheeses = chain(2)
        manager = make_member("aa", self.clock, cheeses[:1])
        raw = ready_raw(manager)
        bad = dict(cheeses[1], nonce=cheeses[1]["nonce"] + 1)
        [error] = raw.send({"type": "ANNOUNCE", "cheese": bad, "id": 3})
        assert (error["code"], error["id"]) == ("invalid-cheese", 3)
        assert raw.send({"type": "ANNOUNCE", "cheese": "nope"})[0]["code"] == "bad-message"
        assert manager.node.stack.height == 1

    def test_orphan_announce_fetches_ancestors_from_that_peer(self) -> None:
        cheeses = chain(30)
        net = Net(self.clock)
        a = make_member("11", self.clock, cheeses[:5])
        b = make_member("22", self.clock, cheeses[:5])
        third = Raw(b, host="10.0.0.7")
        third.hello(node_id="77")
        a_to_b, _ = net.link(a, b)  # equal stacks: no sync on the handshake
        for cheese in cheeses[5:]:
            a.node.stack.add_cheese(cheese, check_signatures=False)
        a_to_b.push({"type": "ANNOUNCE", "cheese": cheeses[-1]})  # B lacks its 24 ancestors
        net.flush()
        assert b.node.stack.height == 30 and b.node.stack.tip.smell == cheeses[-1]["smell"]
        relayed = [
            m["cheese"]["sequence_number"] for m in third.replies() if m["type"] == "ANNOUNCE"
        ]
        assert relayed == list(range(21, 31))  # the last RELAY_TAIL, not all 25

    def test_sync_on_handshake_is_pipelined_and_relays_only_the_tail(self) -> None:
        cheeses = chain(1200)
        net = Net(self.clock)
        a = make_member("11", self.clock, cheeses)
        # the version-1 sync (headers first: test_headers_sync)
        b = make_member("22", self.clock, features=())
        watcher = Raw(b, host="10.0.0.7")
        watcher.hello(node_id="77")
        asked: List[dict] = []
        real = states_mod.ReadyState.msg_GET_CHEESES

        def spy(self: states_mod.ReadyState, msg: dict) -> None:
            asked.append(msg)
            real(self, msg)

        states_mod.ReadyState.msg_GET_CHEESES = spy  # type: ignore[method-assign]
        try:
            net.link(b, a)
        finally:
            states_mod.ReadyState.msg_GET_CHEESES = real  # type: ignore[method-assign]
        assert b.node.stack.height == 1200 and b.node.stack.tip.smell == cheeses[-1]["smell"]
        assert [m["count"] for m in asked] == [500, 500, 500]
        assert asked[1]["locator"][0] == cheeses[499]["smell"]
        assert asked[2]["locator"][0] == cheeses[999]["smell"]
        announced = [
            m["cheese"]["sequence_number"] for m in watcher.replies() if m["type"] == "ANNOUNCE"
        ]
        assert 0 < len(announced) <= 3 * sync_mod.RELAY_TAIL
        assert announced[-1] == 1200

    def test_a_longer_branch_announced_reorganises(self) -> None:
        common = chain(3)
        mine = chain(2, common[-1])
        theirs = chain(3, common[-1], miner=BOB)
        manager = make_member("aa", self.clock, common + mine)
        raw = ready_raw(manager)
        other = Raw(manager, host="10.0.0.6")
        other.hello(node_id="77")
        for cheese in theirs:
            assert raw.send({"type": "ANNOUNCE", "cheese": cheese}) == []
        stack = manager.node.stack
        assert stack.height == 6 and stack.tip.smell == theirs[-1]["smell"]
        assert not stack.is_best(mine[-1]["smell"])
        relayed = [m["cheese"]["smell"] for m in other.replies()]
        assert relayed == [c["smell"] for c in theirs]  # the whole branch, once it had more work


# -- transactions ---------------------------------------------------------------------------


def funded_member(clock: Clock, node_id: str = "aa", **kw: Any) -> PeerManager:
    return make_member(node_id, clock, chain(2, miner=ADDR), **kw)


class TransactionTests(SynchronousTestCase):
    """TX relay, duplicates, invalid payments and a busy mempool."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_tx_relay_once_and_duplicates_silent(self) -> None:
        manager = funded_member(self.clock)
        source = ready_raw(manager, host="10.0.0.5")
        other = Raw(manager, host="10.0.0.6")
        other.hello(node_id="77")
        tx = sign_tx(KEY, BOB, 5, 1, 0)
        assert source.send({"type": "TX", "tx": tx}) == []
        assert other.replies() == [{"type": "TX", "tx": tx}]
        assert source.replies() == []
        assert other.send({"type": "TX", "tx": tx}) == []
        assert source.replies() == [] and other.replies() == []

    def test_invalid_tx_and_busy(self) -> None:
        manager = funded_member(self.clock)
        raw = ready_raw(manager)
        tx = sign_tx(KEY, BOB, 5, 1, 0)
        forged = dict(tx, amount=6)
        [error] = raw.send({"type": "TX", "tx": forged, "id": 1})
        assert (error["code"], error["id"]) == ("invalid-tx", 1)
        assert raw.send({"type": "TX", "tx": [1]})[0]["code"] == "bad-message"
        manager.node.mempool.max_size = 0
        [error] = raw.send({"type": "TX", "tx": tx})
        assert error["code"] == "busy"
        assert len(manager.node.mempool) == 0


# -- misbehaviour and limits ----------------------------------------------------------------------


class MisbehaviourTests(SynchronousTestCase):
    """Bans, caps on connections, silent peers and handshake timeouts."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_a_peer_sending_garbage_is_banned_by_ip_unless_loopback(self) -> None:
        for host, banned in [("203.0.113.5", True), ("127.0.0.1", False), ("::1", False)]:
            with case(host=host, banned=banned):
                clock = clock_at(NOW)
                manager = make_member("aa", clock)
                raw = ready_raw(manager, host=host)
                for _ in range(10):
                    raw.send(b"garbage")
                assert raw.closed
                assert (
                    manager.bans.is_banned(host) is banned and bool(manager.bans.banned) is banned
                )
                assert refused(manager.factory.buildProtocol(addr(host))) is banned
                assert not refused(manager.factory.buildProtocol(addr("203.0.113.6")))
                clock.advance(manager_mod.BAN_SECONDS + 1)
                assert not refused(manager.factory.buildProtocol(addr(host)))

    def test_invalid_cheeses_get_a_peer_banned(self) -> None:
        cheeses = chain(1)
        manager = make_member("aa", self.clock)
        raw = ready_raw(manager, host="203.0.113.5")
        for i in range(4):
            bad = dict(cheeses[0], nonce=cheeses[0]["nonce"] + 1 + i)
            raw.send({"type": "ANNOUNCE", "cheese": bad})
        assert raw.closed and manager.bans.is_banned("203.0.113.5")
        assert manager.node.stack.height == 0

    def test_inbound_and_per_ip_caps(self) -> None:
        manager = make_member("aa", self.clock, max_inbound=3, max_per_ip=2)
        Raw(manager, host="10.0.0.1")
        self.clock.advance(1)
        newest_of_two = Raw(manager, host="10.0.0.1")
        assert refused(manager.factory.buildProtocol(addr("10.0.0.1")))
        Raw(manager, host="10.0.0.2")
        assert manager.admission.inbound_count == 3
        # At the cap a newcomer evicts the least useful inbound peer (more in
        # tests/adversarial/test_connections.py): here the newest from the busiest address.
        Raw(manager, host="10.0.0.3")
        assert newest_of_two.transport.disconnected
        assert len([p for p in manager.connections if not p.closing]) == 3

    def test_silent_peers_are_dropped_and_pings_sent(self) -> None:
        manager = make_member("aa", self.clock)
        raw = ready_raw(manager)
        raw.replies()
        manager.ping_all()
        [ping] = raw.replies()
        assert ping["type"] == "PING" and "id" in ping
        raw.send({"type": "PONG", "id": ping["id"]})
        self.clock.advance(60)
        manager.tick()
        assert not raw.transport.disconnected
        self.clock.advance(31)
        manager.tick()
        assert raw.transport.disconnected

    def test_handshake_timeout(self) -> None:
        manager = make_member("aa", self.clock)
        raw = Raw(manager)
        self.clock.advance(manager_mod.HANDSHAKE_TIMEOUT + 1)
        manager.tick()
        assert raw.transport.disconnected

    def test_per_address_limits_never_apply_to_loopback_members(self) -> None:
        manager = make_member("aa", self.clock, max_per_ip=3, max_inbound=1000)
        local = [Raw(manager, host="127.0.0.1", port=41000 + i) for i in range(50)]
        assert not any(r.closed for r in local) and manager.admission.per_ip["127.0.0.1"] == 50
        assert refused(manager.factory.buildProtocol(addr("198.51.100.1"))) is False
        for _ in range(3):
            Raw(manager, host="198.51.100.2")
        assert refused(manager.factory.buildProtocol(addr("198.51.100.2")))

    def test_a_connection_turned_away_gets_error_busy_naming_the_limit_then_the_close(self) -> None:
        manager = make_member("aa", self.clock, max_per_ip=1)
        Raw(manager, host="198.51.100.9")
        proto = manager.factory.buildProtocol(addr("198.51.100.9"))
        transport = StringTransport()
        proto.makeConnection(transport)
        assert json.loads(transport.value()) == {
            "type": "ERROR",
            "code": "busy",
            "message": "1 connections from 198.51.100.9 already",
        }
        assert transport.disconnecting

    def test_silence_checks_at_every_tick_drop_at_the_deadline(self) -> None:
        """drop_silent skips its scan until the earliest deadline it saw: a peer that
        talks keeps its connection, one that stops is dropped 90 s after its last line."""
        manager = make_member("aa", self.clock)
        quiet, talker = ready_raw(manager), ready_raw(manager)
        for _ in range(int(manager_mod.SILENCE_TIMEOUT // manager_mod.REFILL_INTERVAL) - 1):
            self.clock.advance(manager_mod.REFILL_INTERVAL)
            talker.send({"type": "PING"})
            manager.tick()
        assert not quiet.transport.disconnected
        self.clock.advance(manager_mod.REFILL_INTERVAL + 1)
        talker.send({"type": "PING"})
        manager.tick()
        assert quiet.transport.disconnected and not talker.transport.disconnected
        late = Raw(manager)  # a new connection is looked at from the next tick on
        self.clock.advance(manager_mod.HANDSHAKE_TIMEOUT + 1)
        talker.send({"type": "PING"})
        manager.tick()
        assert late.transport.disconnected and not talker.transport.disconnected


class DownloadTests(SynchronousTestCase):
    """Requests by id, dialling, and downloads that stall, lie or are not read."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_stalled_download_switches_peers(self) -> None:
        cheeses = chain(8)
        manager = make_member("aa", self.clock)
        slow = Raw(manager, host="10.0.0.5")
        [request] = [
            m
            for m in slow.hello(node_id="55", height=8, tip=cheeses[-1]["smell"], work="18")
            if m["type"] == "GET_CHEESES"
        ]
        fast = Raw(manager, host="10.0.0.6")
        hello = fast.hello(node_id="66", height=8, tip=cheeses[-1]["smell"], work="18")
        assert not [m for m in hello if m["type"] == "GET_CHEESES"]  # one download at a time
        self.clock.advance(protocol_mod.REQUEST_TIMEOUT + 1)
        [request2] = [m for m in fast.replies() if m["type"] == "GET_CHEESES"]
        fast.send({"type": "CHEESES", "cheeses": cheeses, "id": request2["id"]})
        assert manager.node.stack.height == 8
        # The late reply of the stalled peer is ignored.
        slow.send({"type": "CHEESES", "cheeses": cheeses, "id": request["id"]})
        assert manager.node.stack.height == 8

    def test_invalid_data_in_a_download_stops_it(self) -> None:
        cheeses = chain(4)
        manager = make_member("aa", self.clock)
        raw = Raw(manager, host="10.0.0.5")
        [request] = [
            m
            for m in raw.hello(node_id="55", height=4, tip=cheeses[-1]["smell"], work="10")
            if m["type"] == "GET_CHEESES"
        ]
        bad = cheeses[:2] + [dict(cheeses[2], timestamp=cheeses[2]["timestamp"] + 1)] + cheeses[3:]
        raw.send({"type": "CHEESES", "cheeses": bad, "id": request["id"]})
        assert manager.node.stack.height == 2
        assert raw.proto.download is None and raw.proto.score > 0
        assert [m for m in raw.replies() if m["type"] == "GET_CHEESES"] == []  # no retry at once

    def test_requests_resolve_by_id_and_fail_on_error_and_timeout(self) -> None:
        manager = make_member("aa", self.clock)
        raw = ready_raw(manager)
        raw.replies()
        results: dict = {}
        for name, msg in [
            ("stats", {"type": "STATS"}),
            ("cheese", {"type": "GET_CHEESE", "smell": "e" * 40}),
            ("ping", {"type": "PING"}),
        ]:
            raw.proto.request(msg).addBoth(
                lambda result, name=name: results.__setitem__(name, result)
            )
        first, second, third = raw.replies()
        raw.send({"type": "ERROR", "code": "not-found", "message": "no", "id": second["id"]})
        raw.send(
            {
                "type": "STATS_REPLY",
                "height": 1,
                "tip": "a" * 40,
                "work": "4",
                "peers": 0,
                "id": first["id"],
            }
        )
        self.clock.advance(protocol_mod.REQUEST_TIMEOUT + 1)
        assert results["cheese"].check(protocol_mod.RemoteError)
        assert results["stats"]["type"] == "STATS_REPLY"
        assert results["ping"].check(protocol_mod.RequestTimeout)
        assert raw.replies() == []  # replies and errors are never answered

    def test_peer_manager_dials_known_addresses_up_to_target(self) -> None:
        dialed: List[Tuple[str, int]] = []

        def dialer(host: str, port: int, factory: Any) -> Deferred:
            dialed.append((host, port))
            return Deferred()

        manager = make_member("aa", self.clock, dialer=dialer, target_peers=3)
        manager.add_addresses(
            [{"host": f"10.0.0.{i}", "port": 24331} for i in range(6)]
            + [{"host": "", "port": 0}, 5],
            "tracker",
        )
        assert len(dialed) == 3
        manager.add_persistent("10.9.9.9", 1234)
        manager.refill()
        assert ("10.9.9.9", 1234) in dialed

    def test_a_downloaded_cheese_with_a_bad_signature_stops_the_sync(self) -> None:
        funded = chain(2, miner=ADDR)
        good = sign_tx(KEY, BOB, 5, 1, 0)
        forged = dict(sign_tx(KEY, BOB, 5, 1, 1), amount=6)
        with_good = mine_child(funded[-1], NETWORK.bits, MINER, [good])
        with_forged = mine_child(with_good, NETWORK.bits, MINER, [forged])
        after = chain(2, with_forged)
        cheeses = funded + [with_good, with_forged] + after
        assert sync_mod.signed_cheeses(cheeses, 10) == {10, 11, 12, 14, 15}
        manager = make_member("aa", self.clock)
        raw = Raw(manager, host="10.0.0.5")
        hello = raw.hello(node_id="55", height=6, tip=after[-1]["smell"], work="14")
        [request] = [m for m in hello if m["type"] == "GET_CHEESES"]
        raw.send({"type": "CHEESES", "cheeses": cheeses, "id": request["id"]})
        assert manager.node.stack.height == 3
        assert raw.proto.score > 0 and raw.proto.download is None

    def test_a_peer_that_does_not_read_is_not_read_from(self) -> None:
        raw = ready_raw(make_member("aa", self.clock))
        assert raw.transport.producer is raw.proto
        raw.proto.pauseProducing()
        assert raw.transport.producerState == "paused"
        raw.proto.resumeProducing()
        assert raw.transport.producerState == "producing"
        raw.proto.close()
        assert raw.transport.producer is None and raw.closed

    def test_pipelined_download_holds_at_most_two_unchecked_chunks(self) -> None:
        cheeses = chain(2000)
        manager = make_member("aa", self.clock)
        checks: List[Deferred] = []

        def slow_verify(chunk: List[dict]) -> Deferred:
            d: Deferred = Deferred()
            checks.append(d)
            return d.addCallback(lambda _: sync_mod.signed_cheeses(chunk))

        manager.sync.verify_signatures = slow_verify  # type: ignore[method-assign]
        raw = Raw(manager, host="10.0.0.5")
        hello = raw.hello(node_id="55", height=2000, tip=cheeses[-1]["smell"], work=str(2 * 2001))
        requests = [m for m in hello if m["type"] == "GET_CHEESES"]

        def answer() -> List[dict]:
            request = requests.pop(0)
            start = (
                0
                if request["locator"][0] == NETWORK.smell
                else next(
                    i + 1 for i, c in enumerate(cheeses) if c["smell"] == request["locator"][0]
                )
            )
            return [
                m
                for m in raw.send(
                    {
                        "type": "CHEESES",
                        "cheeses": cheeses[start : start + 500],
                        "id": request["id"],
                    }
                )
                if m["type"] == "GET_CHEESES"
            ]

        requests += answer()  # chunk 1 arrives: its check starts, chunk 2 is asked for at once
        assert len(requests) == 1 and len(checks) == 1
        requests += (
            answer()
        )  # chunk 2 arrives and is checked too; two unapplied chunks: nothing more asked
        assert requests == [] and len(checks) == 2
        checks[0].callback(None)  # chunk 1 applied: chunk 3 is asked for while chunk 2 is checked
        assert manager.node.stack.height == 500
        requests += [m for m in raw.replies() if m["type"] == "GET_CHEESES"]
        assert len(requests) == 1 and requests[0]["locator"][0] == cheeses[999]["smell"]
        requests += answer()
        assert requests == [] and len(checks) == 3
        checks[2].callback(None)  # chunk 3 checked before chunk 2: applied in order all the same
        assert manager.node.stack.height == 500
        checks[1].callback(None)
        assert manager.node.stack.height == 1500
        requests += [m for m in raw.replies() if m["type"] == "GET_CHEESES"]
        requests += answer()
        checks[3].callback(None)
        assert manager.node.stack.height == 2000 and raw.proto.download is None


_TYPES = [
    "HELLO",
    "STATS",
    "GET_CHEESE",
    "GET_CHEESES",
    "GET_PEERS",
    "PING",
    "ANNOUNCE",
    "TX",
    "STATS_REPLY",
    "CHEESE",
    "CHEESES",
    "PEERS",
    "PONG",
    "ERROR",
]
_FIELDS = [
    "sequence_number",
    "smell",
    "from",
    "count",
    "locator",
    "cheese",
    "tx",
    "id",
    "peers",
    "cheeses",
    "height",
    "tip",
    "work",
    "node_id",
    "network",
    "port",
    "version",
    "code",
]
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=50)
    | st.sampled_from(["0" * 40, "e" * 40, NETWORK.smell, "1"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS + ["type"]), inner, max_size=4)
    ),
    max_leaves=12,
)


class ArbitraryInputTests(SynchronousTestCase):
    """Malformed transactions and arbitrary messages never raise nor change the stack."""

    def test_signed_cheeses_never_raises_on_malformed_transactions(self) -> None:
        good = sign_tx(KEY, BOB, 5, 1, 0)
        odd = [{"from": 5}, 1, dict(good, signature="zz"), dict(good, **{"from": "ab"}), None]
        cheeses = [{"unit_of_information": {"transactions": [good, tx]}} for tx in odd]
        cheeses += [
            {"unit_of_information": {"transactions": [good]}},
            {"unit_of_information": []},
            {},
        ]
        assert sync_mod.signed_cheeses(cheeses) == {5}

    @settings(max_examples=300, deadline=None)
    @given(
        messages=st.lists(
            st.builds(
                lambda t, fields: dict(fields, type=t),
                st.sampled_from(_TYPES),
                st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=5),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def test_arbitrary_messages_never_raise_nor_change_the_stack(
        self, messages: List[dict]
    ) -> None:
        clock = Clock()
        clock.advance(NOW)
        cheeses = chain(3)
        manager = make_member("aa", clock, cheeses)
        raw = ready_raw(manager, host="10.0.0.5")
        raw.replies()
        for msg in messages:
            if msg["type"] == "ANNOUNCE" and isinstance(msg.get("cheese"), dict):
                msg["cheese"] = dict(cheeses[0], **msg["cheese"])  # near a real cheese
            for reply in raw.send(msg):
                assert reply.get("message") != "the message could not be handled", msg
        clock.advance(100)
        manager.tick()
        stack = manager.node.stack
        assert (
            stack.height == 3
            and stack.tip.smell == cheeses[-1]["smell"]
            and len(manager.node.mempool) == 0
        )


# -- pending payments reach a peer that comes up later; peers' heights stay current ----------


def same_stack(manager) -> dict:
    """HELLO fields saying the peer has ``manager``'s best stack."""
    stack = manager.node.stack
    return {"height": stack.height, "tip": stack.tip.smell, "work": str(stack.work)}


class PendingAndHeightTests(SynchronousTestCase):
    """Pending payments reach a peer that comes up later; peers' heights stay current."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_a_new_peer_gets_our_pending_transactions_in_an_order_it_can_take(self) -> None:
        manager = funded_member(self.clock)
        first, second = (
            sign_tx(KEY, BOB, 5, 1, 0),
            sign_tx(KEY, BOB, 6, 9, 1),
        )  # a chain: nonce 0 before 1
        manager.node.submit_tx(first)
        manager.node.submit_tx(second)
        newcomer = Raw(manager, host="10.0.0.7")
        replies = newcomer.hello(
            node_id="77", **same_stack(manager)
        )  # it has our stack: it can take them
        assert [m["tx"] for m in replies if m["type"] == "TX"] == [first, second]
        # And a member fed those lines takes both (nothing out of order).
        other = funded_member(self.clock, node_id="bb")
        feeder = ready_raw(other, host="10.0.0.8")
        assert feeder.send(*[m for m in replies if m["type"] == "TX"]) == []
        assert set(dict(other.node.mempool.items())) == set(dict(manager.node.mempool.items()))

    def test_pending_transactions_for_a_peer_that_does_not_read_are_pulled_as_it_reads(
        self,
    ) -> None:
        manager = funded_member(self.clock)
        txs = [sign_tx(KEY, BOB, 1, 1, n) for n in range(20)]
        for tx in txs:
            manager.node.submit_tx(tx)
        raw = Raw(manager, host="10.0.0.7")
        raw.proto.pauseProducing()  # not reading from the start
        raw.hello(node_id="77", **same_stack(manager))
        assert [m for m in raw.replies() if m["type"] == "TX"] == []
        raw.proto.resumeProducing()
        assert [m["tx"] for m in raw.replies() if m["type"] == "TX"] == txs

    def test_a_peers_height_follows_the_cheeses_it_announces_even_ones_we_have(self) -> None:
        cheeses = chain(3)
        manager = make_member("aa", self.clock, cheeses)
        raw = ready_raw(manager)  # its HELLO said height 0
        # we have it: ignored, but the peer has it
        raw.send({"type": "ANNOUNCE", "cheese": cheeses[1]})
        [info] = manager.peers_info()
        assert info["height"] == 2
        # less work than it showed: no step back
        raw.send({"type": "ANNOUNCE", "cheese": cheeses[0]})
        assert manager.peers_info()[0]["height"] == 2

    def test_a_mined_cheese_is_logged_once(self) -> None:
        from twisted.logger import globalLogPublisher

        manager = make_member("aa", self.clock)
        seen: List[str] = []

        def observer(event: dict) -> None:
            if event.get("log_namespace", "").startswith("cheesecoin"):
                from twisted.logger import formatEvent

                seen.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        try:
            manager.node.submit_cheese(chain(1)[0], source="miner")
        finally:
            globalLogPublisher.removeObserver(observer)
        assert not [line for line in seen if line.startswith("Cheese 1 ")], seen
