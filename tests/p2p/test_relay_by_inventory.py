"""Section 5.2 (issue 29): transactions by inventory (``inv``) and the compact
relay modes (``compact-modes``), with protocol fakes; interoperation of
members listing all, rev2 and none of the features in one network."""

from __future__ import annotations

from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import compact_announcement, header_of
from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p import compact as compact_mod
from cheesecoin.p2p import compact_modes as modes_mod
from cheesecoin.p2p import inventory as inv_mod
from cheesecoin.p2p import relay as relay_mod
from cheesecoin.p2p.errors import BAN_SCORE, ERROR_POINTS
from cheesecoin.p2p.features import ALL, REV2
from cheesecoin.p2p.protocol import MemberProtocol
from cheesecoin.testing.chain import mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NOW, Net, Raw, chain, make_member
from cheesecoin.wire import codec
from cheesecoin.wire.codec import dumps
from tests.cases import clock_at
from tests.p2p.test_compact import setup
from tests.p2p.test_early_relay import reactor_turn


def peer(manager, n: int, features=ALL) -> Raw:
    raw = Raw(manager, host=f"10.0.3.{n}")
    raw.hello(node_id=f"{n + 60:02x}", features=list(features))
    raw.replies()
    return raw


def of_type(msgs: List[dict], kind: str) -> List[dict]:
    return [m for m in msgs if m["type"] == kind]


class InventorySendingTests(SynchronousTestCase):
    """A new transaction goes by txid to inv peers, whole to the others."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses, self.txs, self.fourth = setup(self.clock)

    def test_inv_to_inv_peers_tx_to_the_others_gathered_at_most_inv_delay(self) -> None:
        inv_peer, rev2_peer = peer(self.manager, 1), peer(self.manager, 2, REV2)
        for tx in self.txs:
            self.manager.node.submit_tx(tx, "api")
        assert of_type(rev2_peer.replies(), "TX") and not of_type(inv_peer.replies(), "INV")
        self.clock.advance(inv_mod.INV_DELAY)
        [inv] = of_type(inv_peer.replies(), "INV")
        assert inv["txids"] == [txid(t) for t in self.txs]
        assert inv_mod.INV_DELAY <= 1.0  # section 5.2: none held back more than 1 s

    def test_never_back_to_whoever_brought_it_nor_twice(self) -> None:
        a, b = peer(self.manager, 1), peer(self.manager, 2)
        a.send({"type": "TX", "tx": self.txs[0]})
        self.clock.advance(inv_mod.INV_DELAY)
        assert not of_type(a.replies(), "INV")
        assert of_type(b.replies(), "INV")[0]["txids"] == [txid(self.txs[0])]
        b.send({"type": "INV", "txids": [txid(self.txs[0])]})  # it announces it back: nothing asked
        self.clock.advance(inv_mod.INV_DELAY)
        assert not of_type(b.replies(), "GET_TXS") and not of_type(b.replies(), "INV")


class InventoryReceivingTests(SynchronousTestCase):
    """An INV: what we lack asked of one announcer at a time, then of the next."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses, self.txs, self.fourth = setup(self.clock)

    def test_missing_txids_are_fetched_once_and_relayed_on(self) -> None:
        a, b, c = peer(self.manager, 1), peer(self.manager, 2), peer(self.manager, 3)
        ids = [txid(t) for t in self.txs]
        [ask] = of_type(a.send({"type": "INV", "txids": ids}), "GET_TXS")
        assert ask["txids"] == ids
        assert not of_type(b.send({"type": "INV", "txids": ids}), "GET_TXS"), (
            "asked of one at a time"
        )
        a.send({"type": "TXS", "transactions": self.txs, "id": ask["id"]})
        assert len(self.manager.node.mempool) == 2
        self.clock.advance(inv_mod.INV_DELAY)
        assert of_type(c.replies(), "INV")[0]["txids"] == ids
        assert not of_type(a.replies() + b.replies(), "INV"), "not back to its announcers"

    def test_a_txid_not_delivered_in_time_is_asked_of_the_next_announcer(self) -> None:
        a, b = peer(self.manager, 1), peer(self.manager, 2)
        ids = [txid(self.txs[0])]
        assert of_type(a.send({"type": "INV", "txids": ids}), "GET_TXS")
        b.send({"type": "INV", "txids": ids})
        self.clock.advance(inv_mod.FETCH_TIMEOUT + 0.1)
        [ask] = of_type(b.replies(), "GET_TXS")
        b.send({"type": "TXS", "transactions": [self.txs[0]], "id": ask["id"]})
        assert ids[0] in self.manager.node.mempool
        assert not self.manager.inventory.in_flight and not self.manager.inventory.asked_of

    def test_an_inv_flood_is_bounded_per_peer_and_costs_the_sender_its_slots(self) -> None:
        flooder = peer(self.manager, 1)
        asked = 0
        for i in range(5):
            txids = [f"{i:04x}{j:036x}" for j in range(inv_mod.MAX_INV)]
            asked += sum(
                len(m["txids"])
                for m in of_type(flooder.send({"type": "INV", "txids": txids}), "GET_TXS")
            )
        assert asked == inv_mod.MAX_PEER_IN_FLIGHT
        assert len(self.manager.inventory.in_flight) == inv_mod.MAX_PEER_IN_FLIGHT
        assert len(self.manager.inventory.peers_of) <= inv_mod.MAX_TRACKED
        self.clock.advance(inv_mod.FETCH_TIMEOUT + 0.1)  # never delivered: the slots come back
        assert not self.manager.inventory.in_flight

    def test_a_peer_that_announced_its_quota_is_still_heard_its_oldest_forgotten(self) -> None:
        # A long run passes MAX_PEER_TRACKED transactions from every peer: the
        # announcements of each must still be fetched (here with a quota of 1).
        self.patch(inv_mod, "MAX_PEER_TRACKED", 1)
        a = peer(self.manager, 1)
        first, second = (txid(t) for t in self.txs)
        self.manager.node.submit_tx(self.txs[0], "api")  # we hold it: a is told of it
        assert not of_type(a.send({"type": "INV", "txids": [first]}), "GET_TXS")
        [ask] = of_type(a.send({"type": "INV", "txids": [second]}), "GET_TXS")
        assert ask["txids"] == [second]
        assert list(self.manager.inventory.tracked_by[a.proto]) == [second]
        assert a.proto not in self.manager.inventory.peers_of.get(first, ())

    def test_a_flood_past_its_quota_pushes_out_no_other_peers_entry(self) -> None:
        # The flooder's forgotten txids go with it: the entries of the txids it
        # alone announced do not stay behind to fill MAX_TRACKED and evict the
        # honest announcer's (here with quotas of 3 and 5).
        self.patch(inv_mod, "MAX_PEER_TRACKED", 3)
        self.patch(inv_mod, "MAX_TRACKED", 5)
        honest, flooder = peer(self.manager, 1), peer(self.manager, 2)
        held = txid(self.txs[0])
        self.manager.node.submit_tx(self.txs[0], "api")  # we hold it: not asked for
        honest.send({"type": "INV", "txids": [held]})
        for i in range(20):
            flooder.send({"type": "INV", "txids": [f"{i:040x}"]})
        inventory = self.manager.inventory
        assert honest.proto in inventory.peers_of[held]
        assert len(inventory.tracked_by[flooder.proto]) == 3
        assert len(inventory.peers_of) <= 1 + 3

    def test_an_invalid_transaction_costs_what_an_invalid_tx_costs(self) -> None:
        a = peer(self.manager, 1)
        bad = dict(self.txs[0], memo="forged")  # its signature no longer holds
        [ask] = of_type(a.send({"type": "INV", "txids": [txid(bad)]}), "GET_TXS")
        a.send({"type": "TXS", "transactions": [bad], "id": ask["id"]})
        assert a.proto.score == ERROR_POINTS["invalid-tx"]
        assert not of_type(a.send({"type": "INV", "txids": [txid(bad)]}), "GET_TXS"), (
            "refused lately"
        )

    def test_a_member_without_inv_treats_inv_as_unknown(self) -> None:
        manager = make_member("bb", self.clock, self.cheeses, features=REV2)
        a = peer(manager, 1)
        [error] = a.send({"type": "INV", "txids": [txid(self.txs[0])]})
        assert error["code"] == "unknown-type"


class CompactModesTests(SynchronousTestCase):
    """SEND_COMPACT to at most three peers, headers for the rest, GET_COMPACT/COMPACT."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses, self.txs, self.fourth = setup(self.clock)

    def test_a_header_of_a_cheese_we_have_is_dropped_silently_but_only_with_compact_modes(
        self,
    ) -> None:
        # As our encoder writes it (Raw.send's json.dumps has spaces: always decoded).
        known = dumps({"type": "ANNOUNCE_HEADER", "header": header_of(self.cheeses[-1])})[:-1]
        assert peer(self.manager, 1).send(known) == []
        assert peer(self.manager, 2).proto.score == 0
        # Read before decoding as a known cheese's announcement is: a member that does
        # not list compact-modes still answers the unknown type.
        rev2 = make_member("bb", self.clock, self.cheeses, features=REV2)
        [error] = peer(rev2, 3).send(known)
        assert error["code"] == "unknown-type"

    def test_the_keep_alive_read_without_the_decoder_answers_as_the_handler_does(self) -> None:
        a = peer(self.manager, 1)
        assert a.send(b'{"type":"PING","id":7}') == [{"type": "PONG", "id": 7}]
        assert a.send(b'{"type":"PING","id":"x7"}') == [{"type": "PONG", "id": "x7"}]
        # A PONG carrying the id of a request of ours is its reply, as in the reply table.
        asked = a.proto.request({"type": "GET_MEMPOOL"})
        got: List[dict] = []
        asked.addCallback(got.append)
        assert of_type(a.replies(), "GET_MEMPOOL")
        assert a.send(b'{"type":"PONG","id":%d}' % a.proto._next_id) == []
        assert got == [{"type": "PONG", "id": a.proto._next_id}] and a.proto.score == 0
        b = peer(self.manager, 2)  # not our encoder's: decoded, and refused as before
        assert b.send(b'{"type":"PING","id":01}')[0]["code"] == "bad-json"

    def test_the_stack_comparison_read_without_the_decoder_is_answered_as_decoded(self) -> None:
        a, server = peer(self.manager, 1), self.manager.server
        decoded: List[bytes] = []
        parse = codec.parse_message
        self.patch(codec, "parse_message", lambda line: decoded.append(line) or parse(line))
        fast = a.send(b'{"type":"STATS","id":7}')  # our encoder's form
        assert decoded == []
        slow = a.send({"id": 7, "type": "STATS"})  # json.dumps's spaces: decoded
        assert len(decoded) == 1
        stack = self.manager.node.stack

        def stats(peers: int) -> dict:
            return {
                "type": "STATS_REPLY",
                "height": stack.height,
                "tip": stack.tip.smell,
                "work": str(stack.work),
                "peers": peers,
            }

        assert fast == slow == [dict(stats(len(self.manager.peers)), id=7)]
        assert stack.height > 0 and fast[0]["tip"] == stack.tip.smell
        assert a.send(b'{"type":"STATS","id":"s7"}')[0]["id"] == "s7"  # decoded: any id
        # The line built by hand is our encoder's, whatever the id.
        for rid in (12, "x\u00e9", None):
            line = server.stats_line(3, rid)
            assert line == dumps(stats(3) if rid is None else dict(stats(3), id=rid))
        # Our STATS's reply: read without the decoder, the claim taken as from a decoded one.
        self.manager.ask_stats(a.proto)
        assert of_type(a.replies(), "STATS")
        reply = {"type": "STATS_REPLY", "height": 5, "tip": "ab" * 20, "work": "1", "peers": 3}
        assert a.send(dumps(dict(reply, id=a.proto._next_id))[:-1]) == []
        assert len(decoded) == 2  # (the "s7" STATS only)
        assert (a.proto.peer_height, a.proto.peer_tip, a.proto.score) == (5, "ab" * 20, 0)
        # A reply not of our encoder's form is decoded and its fields checked, as before.
        b = peer(self.manager, 2)
        self.manager.ask_stats(b.proto)
        b.replies()
        bad = dumps(dict(reply, tip="AB" * 20, id=b.proto._next_id))[:-1]
        assert b.send(bad) == [] and b.proto.score == 10 and b.proto.peer_height == 0

    def test_the_first_three_modes_peers_are_asked_for_high_bandwidth(self) -> None:
        raws = [Raw(self.manager, host=f"10.0.4.{n}") for n in range(5)]
        sent = []
        for n, raw in enumerate(raws):
            sent.append(
                of_type(raw.hello(node_id=f"{n + 70:02x}", features=list(ALL)), "SEND_COMPACT")
            )
        assert [bool(s) for s in sent] == [True, True, True, False, False]
        assert all(s[0]["high_bandwidth"] is True for s in sent[:3])
        assert len(self.manager.modes.high) == modes_mod.MAX_HIGH_BANDWIDTH

    def test_new_cheeses_go_as_header_compact_or_whole_by_what_each_peer_asked(self) -> None:
        low, high = peer(self.manager, 1), peer(self.manager, 2)
        rev2, none = peer(self.manager, 3, REV2), peer(self.manager, 4, ())
        high.send({"type": "SEND_COMPACT", "high_bandwidth": True})
        self.manager.node.submit_cheese(self.fourth, "miner")
        assert of_type(low.replies(), "ANNOUNCE_HEADER") == [
            {"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}
        ]
        assert of_type(high.replies(), "ANNOUNCE_COMPACT") == [compact_announcement(self.fourth)]
        assert of_type(rev2.replies(), "ANNOUNCE_COMPACT") == [compact_announcement(self.fourth)]
        assert of_type(none.replies(), "ANNOUNCE") == [{"type": "ANNOUNCE", "cheese": self.fourth}]

    def test_announce_header_then_get_compact_then_the_rebuild(self) -> None:
        a = peer(self.manager, 1)
        [ask] = of_type(
            a.send({"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}), "GET_COMPACT"
        )
        assert ask["smell"] == self.fourth["smell"]
        compact = dict(compact_announcement(self.fourth), type="COMPACT", id=ask["id"])
        [get_txs] = of_type(a.send(compact), "GET_TXS")
        a.send({"type": "TXS", "transactions": self.txs, "id": get_txs["id"]})
        assert self.manager.node.stack.tip.smell == self.fourth["smell"]

    def test_the_answer_for_a_cheese_brought_meanwhile_is_dropped_unread(self) -> None:
        """Most GET_COMPACTs are answered after a high-bandwidth peer has brought the
        cheese: the COMPACT is read without the decoder, its request resolved and the
        cheese found held, as the decoded reply's handler would; nobody pays."""
        a = peer(self.manager, 1)
        [ask] = of_type(
            a.send({"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}), "GET_COMPACT"
        )
        self.manager.node.submit_cheese(self.fourth, "miner")  # brought meanwhile
        decoded: List[bytes] = []
        parse = codec.parse_message
        self.patch(codec, "parse_message", lambda line: decoded.append(line) or parse(line))
        line = dumps(dict(compact_announcement(self.fourth), type="COMPACT", id=ask["id"]))[:-1]
        assert a.send(line) == []
        assert decoded == [] and ask["id"] not in a.proto.pending
        assert not self.manager.modes.asking
        self.clock.advance(31)  # its timeout was cancelled with the request
        assert a.proto.score == 0
        # The same answer for a cheese we do not hold is decoded (the rebuild test).
        b = peer(self.manager, 2)
        other = mine_child(self.fourth, self.fourth["bits"], ADDR, [], note="other")
        [ask] = of_type(
            b.send({"type": "ANNOUNCE_HEADER", "header": header_of(other)}), "GET_COMPACT"
        )
        b.send(dumps(dict(compact_announcement(other), type="COMPACT", id=ask["id"]))[:-1])
        assert decoded[-1].startswith(b'{"type":"COMPACT",')
        assert self.manager.node.stack.tip.smell == other["smell"]

    def test_get_compact_is_answered_for_any_cheese_we_have(self) -> None:
        self.manager.node.submit_cheese(self.fourth, "miner")
        a = peer(self.manager, 1)
        [reply] = a.send({"type": "GET_COMPACT", "smell": self.fourth["smell"], "id": 5})
        assert reply == dict(compact_announcement(self.fourth), type="COMPACT", id=5)
        [error] = a.send({"type": "GET_COMPACT", "smell": "e" * 40, "id": 6})
        assert error["code"] == "not-found"
        [error] = a.send({"type": "SEND_COMPACT", "high_bandwidth": "yes"})
        assert error["code"] == "bad-message"

    def test_an_announcer_of_a_header_that_never_answers_pays(self) -> None:
        a = peer(self.manager, 1)
        assert of_type(
            a.send({"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}), "GET_COMPACT"
        )
        self.clock.advance(31)
        assert a.proto.score == modes_mod.UNDELIVERED_POINTS
        assert not self.manager.modes.asking

    def test_the_first_to_bring_a_new_best_cheese_goes_first_keeping_one_dialled(self) -> None:
        inbound = [peer(self.manager, n) for n in range(4)]
        assert self.manager.modes.high == [r.proto for r in inbound[:3]]
        inbound[3].send({"type": "ANNOUNCE", "cheese": self.fourth})
        assert self.manager.modes.high[0] is inbound[3].proto
        assert len(self.manager.modes.high) == modes_mod.MAX_HIGH_BANDWIDTH


class MixedNetworkTests(SynchronousTestCase):
    """Members listing all, rev2 and none of the features agree and hold every payment."""

    def test_all_rev2_and_none_members_in_one_network(self) -> None:
        clock = clock_at(NOW)
        cheeses = chain(3, miner=ADDR)
        members = [
            make_member(f"{n:02x}", clock, cheeses, features=f)
            for n, f in enumerate([ALL, ALL, REV2, (), ALL, REV2])
        ]
        net = Net(clock)
        for i in range(len(members)):  # a ring and a chord or two
            net.link(members[i], members[(i + 1) % len(members)])
        net.link(members[0], members[3])
        net.link(members[2], members[5])
        txs = [sign_tx(KEY, BOB, 1, 1, n, f"p{n}") for n in range(6)]
        for n, tx in enumerate(txs):
            members[n % len(members)].node.submit_tx(tx, "api")
            for _ in range(20):
                clock.advance(inv_mod.INV_DELAY)
                net.flush()
        for m in members:
            assert len(m.node.mempool) == len(txs), m.node.node_id
        tip = cheeses[-1]
        for n in (1, 3, 2):  # cheeses mined by an all, a none and a rev2 member
            new = mine_child(tip, tip["bits"], ADDR, txs[:2] if n == 1 else [])
            members[n].node.submit_cheese(new, "miner")
            for _ in range(20):
                clock.advance(inv_mod.INV_DELAY)
                net.flush()
            tip = new
        assert {m.node.stack.tip.smell for m in members} == {tip["smell"]}


class AttackMendsTests(SynchronousTestCase):
    """The independent attack of round three: what an invalid body costs by COMPACT,
    and a full rebuild table that keeps an honest rebuild."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses, self.txs, self.fourth = setup(self.clock)

    def test_an_invalid_body_by_compact_costs_what_an_announce_compact_costs(self) -> None:
        """An honest member announces headers before validating too: parity."""
        bad_tx = dict(self.txs[0], memo="forged")  # its signature no longer holds
        bad = mine_child(self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, [bad_tx], note="bad")
        a = peer(self.manager, 1)
        [ask] = of_type(
            a.send({"type": "ANNOUNCE_HEADER", "header": header_of(bad)}), "GET_COMPACT"
        )
        [get_txs] = of_type(
            a.send(dict(compact_announcement(bad), type="COMPACT", id=ask["id"])), "GET_TXS"
        )
        [error] = of_type(
            a.send({"type": "TXS", "transactions": [bad_tx], "id": get_txs["id"]}), "ERROR"
        )
        assert error["code"] == "invalid-cheese"
        assert a.proto.score == compact_mod.RELAYED_INVALID_POINTS
        worse = mine_child(self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, [bad_tx], note="w")
        b = peer(self.manager, 2)
        [get_txs] = of_type(b.send(compact_announcement(worse)), "GET_TXS")
        b.send({"type": "TXS", "transactions": [bad_tx], "id": get_txs["id"]})
        assert b.proto.score == a.proto.score
        whole = mine_child(self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, [bad_tx], note="c")
        c = peer(self.manager, 3)  # whole, sent after validation: the full points
        c.send({"type": "ANNOUNCE", "cheese": whole})
        assert c.proto.score == ERROR_POINTS["invalid-cheese"]

    def hostile_loop(self, by_header: bool) -> Tuple[int, bool]:
        """Header-valid cheeses with invalid bodies from one peer until it is closed:
        how many it sent, and whether its host is banned."""
        manager, cheeses, txs, _ = setup(self.clock)
        bad_tx = dict(txs[0], memo="forged")
        hostile = peer(manager, 9)
        sent = 0
        while not hostile.proto.closing and sent < 100:
            bad = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, [bad_tx], note=f"{sent}")
            if by_header:
                header = {"type": "ANNOUNCE_HEADER", "header": header_of(bad)}
                [ask] = of_type(hostile.send(header), "GET_COMPACT")
                msg = dict(compact_announcement(bad), type="COMPACT", id=ask["id"])
                [get_txs] = of_type(hostile.send(msg), "GET_TXS")
            else:
                [get_txs] = of_type(hostile.send(compact_announcement(bad)), "GET_TXS")
            hostile.send({"type": "TXS", "transactions": [bad_tx], "id": get_txs["id"]})
            sent += 1
        assert manager.node.stack.tip.smell == cheeses[-1]["smell"]
        return sent, hostile.proto.peer_host() in manager.bans.banned

    def test_a_hostile_loop_by_compact_ends_as_one_by_announce_compact(self) -> None:
        """By ANNOUNCE_HEADER and COMPACT, closed at the same count as by ANNOUNCE_COMPACT:
        after MAX_ERRORS errors (score 50), or, errors not counted, banned at BAN_SCORE."""
        closed = [self.hostile_loop(by_header) for by_header in (True, False)]
        assert closed == [(MemberProtocol.MAX_ERRORS, False)] * 2
        self.patch(MemberProtocol, "MAX_ERRORS", 1000)
        banned = [self.hostile_loop(by_header) for by_header in (True, False)]
        assert banned == [(-(-BAN_SCORE // compact_mod.RELAYED_INVALID_POINTS), True)] * 2

    def test_a_full_rebuild_table_refuses_newcomers_instead_of_evicting(self) -> None:
        self.patch(compact_mod, "MAX_REBUILDING", 2)
        honest = peer(self.manager, 1)
        [ask] = of_type(honest.send(compact_announcement(self.fourth)), "GET_TXS")
        attackers = [peer(self.manager, n) for n in range(2, 6)]
        for n, raw in enumerate(attackers):
            sibling = mine_child(
                self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, self.txs[:1], note=f"x{n}"
            )
            raw.send(compact_announcement(sibling))
        assert self.fourth["smell"] in self.manager.compact.rebuilding
        honest.send({"type": "TXS", "transactions": self.txs, "id": ask["id"]})
        assert self.manager.node.stack.tip.smell == self.fourth["smell"]

    def test_get_txs_looks_only_in_side_cheeses_near_our_tip(self) -> None:
        from cheesecoin.p2p.mempool_sync import SIDE_DEPTH

        cheeses = chain(SIDE_DEPTH + 5, miner=ADDR)
        manager = make_member("cc", self.clock, cheeses)
        tx = sign_tx(KEY, BOB, 1, 1, 0, "side")
        old_side = mine_child(cheeses[0], cheeses[0]["bits"], ADDR, [tx], note="old side")
        new_side = mine_child(cheeses[-2], cheeses[-2]["bits"], ADDR, [tx], note="new side")
        for side in (old_side, new_side):
            manager.node.submit_cheese(side)
            assert not manager.node.stack.is_best(side["smell"])
        a = peer(manager, 1)
        [far] = a.send(
            {"type": "GET_TXS", "txids": [txid(tx)], "smell": old_side["smell"], "id": 1}
        )
        [near] = a.send(
            {"type": "GET_TXS", "txids": [txid(tx)], "smell": new_side["smell"], "id": 2}
        )
        assert far["transactions"] == [] and near["transactions"] == [tx]

    def test_a_compact_reply_from_one_peer_keeps_another_announcers_discount(self) -> None:
        """The 5-point discount is per announcer: B's COMPACT does not make A's pushed
        ANNOUNCE_COMPACT (relayed before validation, as honest members do) cost 25."""
        bad_tx = dict(self.txs[0], memo="forged")
        bad = mine_child(self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, [bad_tx], note="bad2")
        a, b = peer(self.manager, 1), peer(self.manager, 2)
        [ask_a] = of_type(a.send(compact_announcement(bad)), "GET_TXS")
        [ask_b] = of_type(
            b.send({"type": "ANNOUNCE_HEADER", "header": header_of(bad)}), "GET_COMPACT"
        )
        b.send(dict(compact_announcement(bad), type="COMPACT", id=ask_b["id"]))
        a.send({"type": "TXS", "transactions": [bad_tx], "id": ask_a["id"]})
        assert a.proto.score == compact_mod.RELAYED_INVALID_POINTS


class EarlyHeaderTests(SynchronousTestCase):
    """A rebuilt compact cheese that would be our new best goes as ANNOUNCE_HEADER to
    the peers that take headers at the moment it goes as ANNOUNCE_COMPACT to the others:
    before its validation, never to its holders, and not again once it is added."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses, self.txs, self.fourth = setup(self.clock)
        for tx in self.txs:  # rebuilt from the mempool: no GET_TXS
            self.manager.node.submit_tx(tx, "api")
        self.source, self.low, self.holder = (peer(self.manager, n) for n in (1, 2, 3))
        self.high, self.rev2, self.none = (
            peer(self.manager, 4),
            peer(self.manager, 5, REV2),
            peer(self.manager, 6, ()),
        )
        self.high.send({"type": "SEND_COMPACT", "high_bandwidth": True})

    def announced(self) -> List[List[dict]]:
        raws = (self.source, self.low, self.holder, self.high, self.rev2, self.none)
        return [[m for m in r.replies() if m["type"].startswith("ANNOUNCE")] for r in raws]

    def test_the_header_goes_before_validation_not_to_holders_nor_twice(self) -> None:
        self.patch(compact_mod, "EARLY_MIN_TXS", 1)  # its validation waits for the push
        self.announced()
        header = {"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}
        assert self.source.send(compact_announcement(self.fourth)) == []
        assert self.holder.send(header) == [], "read in the same poll: a holder"
        assert self.announced() == [[]] * 6, "pushed at the reactor's turn after this poll"
        reactor_turn(self.clock)
        whole = compact_announcement(self.fourth)
        assert self.announced() == [[], [header], [], [whole], [whole], []]
        assert self.manager.node.stack.tip.smell == self.cheeses[-1]["smell"], "not validated"
        [reply] = self.low.send({"type": "GET_COMPACT", "smell": self.fourth["smell"], "id": 9})
        assert reply == dict(whole, type="COMPACT", id=9), "answered while it is validated"
        self.clock.advance(0)
        assert self.manager.node.stack.tip.smell == self.fourth["smell"]
        assert self.announced() == [
            [],
            [],
            [],
            [],
            [],
            [{"type": "ANNOUNCE", "cheese": self.fourth}],
        ]

    def test_a_small_cheese_validated_at_once_has_its_header_written_once(self) -> None:
        self.announced()
        assert self.source.send(compact_announcement(self.fourth)) == []
        assert self.manager.node.stack.tip.smell == self.fourth["smell"], "validated at once"
        header = {"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}
        whole = compact_announcement(self.fourth)
        announce = {"type": "ANNOUNCE", "cheese": self.fourth}
        assert self.announced() == [[], [], [], [], [], [announce]]
        reactor_turn(self.clock)
        assert self.announced() == [[], [header], [header], [whole], [whole], []]
        self.clock.advance(1)
        assert self.announced() == [[]] * 6

    def test_a_small_invalid_cheese_sends_no_header(self) -> None:
        bad_tx = dict(self.txs[0], memo="forged")
        bad = mine_child(self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, [bad_tx], note="bad")
        self.announced()
        [get_txs] = of_type(self.source.send(compact_announcement(bad)), "GET_TXS")
        self.source.send({"type": "TXS", "transactions": [bad_tx], "id": get_txs["id"]})
        assert self.source.proto.score == compact_mod.RELAYED_INVALID_POINTS
        reactor_turn(self.clock)
        assert self.announced() == [[]] * 6

    def test_without_early_relay_the_header_goes_once_after_validation(self) -> None:
        """The selfish pool of the simulator turns early relay off: headers still go."""
        self.manager.relay.relay_early = lambda *args, **kw: False
        self.announced()
        self.source.send(compact_announcement(self.fourth))
        header = {"type": "ANNOUNCE_HEADER", "header": header_of(self.fourth)}
        whole = compact_announcement(self.fourth)
        announce = {"type": "ANNOUNCE", "cheese": self.fourth}
        assert self.announced() == [[], [header], [header], [whole], [whole], [announce]]
        self.clock.advance(1)
        assert self.announced() == [[]] * 6

    def test_peers_sent_an_invalid_cheese_early_fetch_it_and_charge_the_relayed_points(
        self,
    ) -> None:
        """Refused after we relayed it (header and compact), it is still answered for:
        our peers find it invalid (5 points), not undelivered (20)."""
        self.patch(compact_mod, "EARLY_MIN_TXS", 1)
        net = Net(self.clock)
        low, high = (
            make_member("bb", self.clock, self.cheeses),
            make_member("cc", self.clock, self.cheeses),
        )
        low_link, _ = net.link(low, self.manager)
        high_link, _ = net.link(high, self.manager)
        low_link.push({"type": "SEND_COMPACT", "high_bandwidth": False})
        net.flush()
        bad_tx = dict(self.txs[0], memo="forged")
        bad = mine_child(self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, [bad_tx], note="bad")
        [get_txs] = of_type(self.source.send(compact_announcement(bad)), "GET_TXS")
        self.source.send({"type": "TXS", "transactions": [bad_tx], "id": get_txs["id"]})
        self.clock.advance(0)  # pushed, then refused: the peers' requests come after
        assert bad["smell"] in self.manager.node.stack.invalid
        net.flush()
        for member, link in ((low, low_link), (high, high_link)):
            assert link.score == compact_mod.RELAYED_INVALID_POINTS
            assert bad["smell"] in member.node.stack.invalid
        assert self.source.proto.score == compact_mod.RELAYED_INVALID_POINTS
        self.clock.advance(relay_mod.REFUSED_SECONDS)
        assert not self.manager.relay.refused
