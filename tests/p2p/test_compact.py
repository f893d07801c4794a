"""Section 5.1, features headers and compact: GET_HEADERS, GET_CHEESES by
smells, ANNOUNCE_COMPACT both ways (rebuilt from the mempool, missing
transactions by GET_TXS, the whole cheese by GET_CHEESE as the fallback)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import compact_announcement, header_of
from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p.inventory import INV_DELAY
from cheesecoin.testing.chain import mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NOW, Net, Raw, chain, make_member
from tests.cases import case, clock_at

BAD_COMPACT = [  # a change to an announcement, and the error code it gets
    ("a nonce", lambda m: m["header"].update(nonce=m["header"]["nonce"] + 1), "invalid-cheese"),
    ("an info_hash", lambda m: m["header"].update(info_hash="0" * 40), "invalid-cheese"),
    ("no info_hash", lambda m: m["header"].pop("info_hash"), "bad-message"),
    ("a miner", lambda m: m.update(miner="nope"), "bad-message"),
    ("txids", lambda m: m.update(txids=["zz"]), "bad-message"),
]


def setup(clock, **kw):
    """A member on 3 cheeses paying ADDR, and a 4th cheese with two payments (not given to it)."""
    cheeses = chain(3, miner=ADDR)
    manager = make_member("aa", clock, cheeses, **kw)
    txs = [sign_tx(KEY, BOB, 1, 1, 0, "a"), sign_tx(KEY, BOB, 2, 1, 1, "b")]
    fourth = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, txs, note="compact")
    return manager, cheeses, txs, fourth


def compact_peer(manager, host="10.0.0.5", node_id="55"):
    raw = Raw(manager, host=host)
    raw.hello(node_id=node_id, features=["headers", "compact", "mempool"])
    return raw


class ServingHeadersAndCheesesTests(SynchronousTestCase):
    """GET_HEADERS after a locator, GET_CHEESES by smells."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_get_headers_after_the_locator(self) -> None:
        manager, cheeses, _, _ = setup(self.clock)
        raw = compact_peer(manager)
        [reply] = raw.send({"type": "GET_HEADERS", "locator": [cheeses[0]["smell"]], "id": 1})
        assert reply == {
            "type": "HEADERS",
            "headers": [header_of(cheeses[1]), header_of(cheeses[2])],
            "id": 1,
        }
        [reply] = raw.send({"type": "GET_HEADERS", "locator": ["f" * 40], "count": 2, "id": 2})
        assert [h["sequence_number"] for h in reply["headers"]] == [1, 2]  # after the Blue Cheese
        for bad in ({"locator": "x"}, {"locator": [], "count": 0}, {"locator": [], "count": 2001}):
            [error] = raw.send(dict({"type": "GET_HEADERS", "id": 3}, **bad))
            assert error["code"] == "bad-message", bad

    def test_get_cheeses_by_smells_of_any_branch_in_the_order_asked(self) -> None:
        manager, cheeses, _, _ = setup(self.clock)
        side = chain(1, parent=cheeses[1], miner=BOB)[0]
        manager.node.submit_cheese(side)
        raw = compact_peer(manager)
        [reply] = raw.send(
            {
                "type": "GET_CHEESES",
                "smells": [side["smell"], "e" * 40, cheeses[1]["smell"]],
                "id": 4,
            }
        )
        assert reply == {"type": "CHEESES", "cheeses": [side, cheeses[1]], "id": 4}
        for bad in ([], ["x"], ["a" * 40] * 501):
            [error] = raw.send({"type": "GET_CHEESES", "smells": bad, "id": 5})
            assert error["code"] == "bad-message", bad


class CompactRebuildTests(SynchronousTestCase):
    """An ANNOUNCE_COMPACT rebuilt from the mempool, by GET_TXS, or by GET_CHEESE."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_a_compact_cheese_is_rebuilt_from_the_mempool(self) -> None:
        manager, cheeses, txs, fourth = setup(self.clock)
        for tx in txs:
            manager.node.submit_tx(tx)
        raw = compact_peer(manager)
        assert raw.send(compact_announcement(fourth)) == []
        assert manager.node.stack.tip.smell == fourth["smell"]
        assert manager.compact.rebuilt == 1 and len(manager.node.mempool) == 0

    def test_missing_transactions_come_from_one_get_txs_to_the_announcer(self) -> None:
        manager, cheeses, txs, fourth = setup(self.clock)
        manager.node.submit_tx(txs[0])
        raw = compact_peer(manager)
        [ask] = raw.send(compact_announcement(fourth))
        assert (
            ask["type"] == "GET_TXS"
            and ask["txids"] == [txid(txs[1])]
            and ask["smell"] == fourth["smell"]
        )
        assert raw.send(compact_announcement(fourth)) == [], (
            "a second announcement while rebuilding asks again"
        )
        raw.send({"type": "TXS", "transactions": [txs[1]], "id": ask["id"]})
        assert manager.node.stack.tip.smell == fourth["smell"]

    def test_the_whole_cheese_by_smell_when_the_announcer_cannot_supply_them(self) -> None:
        manager, cheeses, txs, fourth = setup(self.clock)
        raw = compact_peer(manager)
        [ask] = raw.send(compact_announcement(fourth))
        [whole] = raw.send({"type": "TXS", "transactions": [], "id": ask["id"]})
        assert whole == {"type": "GET_CHEESE", "smell": fourth["smell"], "id": whole["id"]}
        raw.send({"type": "CHEESE", "cheese": fourth, "id": whole["id"]})
        assert manager.node.stack.tip.smell == fourth["smell"] and manager.compact.fell_back == 1

    def test_transactions_that_do_not_match_the_info_hash_fall_back_to_the_whole_cheese(
        self,
    ) -> None:
        manager, cheeses, txs, fourth = setup(self.clock)
        for tx in txs:
            manager.node.submit_tx(tx)
        msg = compact_announcement(fourth)
        msg["txids"] = list(reversed(msg["txids"]))  # the right transactions, the wrong order
        raw = compact_peer(manager)
        [whole] = raw.send(msg)
        assert whole["type"] == "GET_CHEESE" and whole["smell"] == fourth["smell"]

    def test_a_bad_compact_announcement_is_refused(self) -> None:
        for what, change, code in BAD_COMPACT:
            with case(bad=what, code=code):
                manager, cheeses, txs, fourth = setup(clock_at(NOW))
                msg = compact_announcement(fourth)
                change(msg)
                raw = compact_peer(manager)
                [error] = raw.send(msg)
                assert error["type"] == "ERROR" and error["code"] == code
                assert manager.node.stack.tip.smell == cheeses[-1]["smell"]

    def test_an_announcement_of_a_cheese_we_have_is_dropped_unread(self) -> None:
        """Every peer but the first announces a cheese: a line of one we have (as
        our encoder writes it) is ignored before decoding, still counted as traffic;
        the same line about a cheese we lack is decoded and its bad field refused."""
        from cheesecoin.wire import codec
        from cheesecoin.wire.codec import dumps

        decoded = []
        parse = codec.parse_message
        self.patch(codec, "parse_message", lambda line: decoded.append(line) or parse(line))
        counted = []
        manager, cheeses, _, _ = setup(self.clock)
        manager.traffic = lambda direction, kind, size: counted.append((direction, kind))
        raw = compact_peer(manager)
        for have, code in (
            (cheeses[-1], None),
            (chain(1, parent=cheeses[-1], miner=BOB)[0], "bad-message"),
        ):
            msg = compact_announcement(have)
            msg["miner"] = "not an address"
            for line in (
                dumps(msg)[:-1],
                dumps({"type": "ANNOUNCE", "cheese": dict(have, nonce="x")})[:-1],
            ):
                counted.clear(), decoded.clear()
                replies = raw.send(line)
                kind = line[9 : line.index(b'",')].decode()
                assert ("in", kind) in counted
                if code is None:
                    assert replies == [] and decoded == [], (
                        "a cheese we have: not decoded, not refused"
                    )
                else:
                    assert decoded == [line]
                    assert [r["code"] for r in replies] in (["bad-message"], ["invalid-cheese"]), (
                        replies
                    )
        assert manager.node.stack.tip.smell == cheeses[-1]["smell"]


class CompactSendingTests(SynchronousTestCase):
    """New cheeses go compact to compact peers, whole to the others."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_new_cheeses_go_compact_to_compact_peers_and_whole_to_the_others(self) -> None:
        manager, cheeses, txs, fourth = setup(self.clock)
        compact = compact_peer(manager, "10.0.0.5", "55")
        plain = Raw(manager, host="10.0.0.6")
        plain.hello(node_id="66")
        compact.replies(), plain.replies()
        manager.node.submit_cheese(fourth, "miner")
        [to_compact] = [m for m in compact.replies() if m["type"].startswith("ANNOUNCE")]
        [to_plain] = [m for m in plain.replies() if m["type"].startswith("ANNOUNCE")]
        assert to_compact == compact_announcement(fourth)
        assert to_plain == {"type": "ANNOUNCE", "cheese": fourth}

    def test_two_compact_members_relay_a_cheese_with_payments_as_compact(self) -> None:
        a, cheeses, txs, fourth = setup(self.clock)
        b = make_member("bb", self.clock, cheeses)
        net = Net(self.clock)
        net.link(b, a)
        for tx in txs:
            a.node.submit_tx(tx)
        self.clock.advance(INV_DELAY)  # section 5.2: announced by txid, gathered first
        net.flush()
        assert len(b.node.mempool) == 2
        a.node.submit_cheese(fourth, "miner")
        net.flush()
        assert b.node.stack.tip.smell == fourth["smell"] and b.compact.rebuilt == 1
