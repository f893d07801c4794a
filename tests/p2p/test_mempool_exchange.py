"""Section 5.1, the part this member implements: ``features`` in HELLO, the
mempool exchange (GET_MEMPOOL/MEMPOOL, GET_TXS/TXS) and CONSENSUS, and interop
with a member whose HELLO lists no feature."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p.manager import CONSENSUS_INTERVAL
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NOW, Net, Raw, chain, make_member
from tests.cases import clock_at


def funded(node_id: str, clock: Clock, **kw):
    """A member whose stack pays ADDR (KEY) three rewards, and the cheeses."""
    cheeses = chain(3, miner=ADDR)
    return make_member(node_id, clock, cheeses, **kw), cheeses


def payments(n: int, fee: int = 1) -> list:
    return [sign_tx(KEY, BOB, 1, fee + i, i, f"p{i}") for i in range(n)]


class FeaturesTests(SynchronousTestCase):
    """HELLO's features, and members with and without them."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_hello_lists_mempool_and_a_bad_features_field_is_bad_message(self) -> None:
        manager, _ = funded("aa", self.clock)
        assert manager.hello_message()["features"] == [
            "headers",
            "compact",
            "mempool",
            "inv",
            "compact-modes",
        ]
        assert "features" not in make_member("bb", self.clock, features=()).hello_message()
        for bad in ("mempool", ["x"] * 33, ["y" * 33], [1]):
            raw = Raw(manager)
            replies = raw.hello(features=bad)
            assert replies[0]["type"] == "ERROR" and replies[0]["code"] == "bad-message", replies
            assert not raw.proto.ready

    def test_a_peer_without_features_gets_the_mempool_pushed_as_tx_once_it_has_our_stack(
        self,
    ) -> None:
        manager, cheeses = funded("aa", self.clock)
        for tx in payments(2):
            manager.node.submit_tx(tx)
        ours = {"height": 3, "tip": cheeses[-1]["smell"], "work": str(manager.node.stack.work)}
        synced = Raw(manager, host="10.0.0.7")
        # no features: a version-1 peer, with our stack
        replies = synced.hello(node_id="71", **ours)
        assert "GET_MEMPOOL" not in [m["type"] for m in replies]
        assert sorted(m["tx"]["memo"] for m in replies if m["type"] == "TX") == ["p0", "p1"]

        behind = Raw(manager, host="10.0.0.8")
        replies = behind.hello(node_id="72")  # height 0: it would refuse the payments now
        assert [m for m in replies if m["type"] == "TX"] == []
        [stats] = [m for m in replies if m["type"] == "STATS"]
        replies = behind.send(
            dict({"type": "STATS_REPLY", "peers": 1, "id": stats["id"]}, **ours)
        )  # it caught up
        assert sorted(m["tx"]["memo"] for m in replies if m["type"] == "TX") == ["p0", "p1"]

    def test_members_with_features_sync_and_relay_to_each_other(self) -> None:
        self.sync_and_relay(None, None)

    def test_a_member_with_features_and_one_without_sync_and_relay_to_each_other(self) -> None:
        self.sync_and_relay(None, ())

    def test_a_member_without_features_and_one_with_sync_and_relay_to_each_other(self) -> None:
        self.sync_and_relay((), None)

    def test_members_without_features_sync_and_relay_to_each_other(self) -> None:
        self.sync_and_relay((), ())

    def sync_and_relay(self, features_a, features_b) -> None:
        """a (funded, with a pending payment) and b (empty) with these features,
        None for the default."""
        kw_a = {} if features_a is None else {"features": features_a}
        kw_b = {} if features_b is None else {"features": features_b}
        a, cheeses = funded("aa", self.clock, **kw_a)
        b = make_member("bb", self.clock, [], **kw_b)
        tx = payments(1)[0]
        a.node.submit_tx(tx)
        net = Net(self.clock)
        net.link(b, a)
        assert b.node.stack.tip.smell == cheeses[-1]["smell"], "b did not sync from a"
        # A version-1 peer gets the payments pushed once it has the stack they
        # need, which its next STATS reply tells (every 60 s, the member's timer).
        self.clock.advance(60)
        a.compare_stacks()
        b.compare_stacks()
        net.flush()
        assert txid(tx) in b.node.mempool, "the pending payment did not reach b"
        more = chain(1, parent=cheeses[-1], miner=ADDR)[0]
        b.node.submit_cheese(more)
        net.flush()
        assert a.node.stack.tip.smell == more["smell"], "a new cheese was not relayed"


class MempoolExchangeTests(SynchronousTestCase):
    """GET_MEMPOOL/MEMPOOL and GET_TXS/TXS both ways."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_get_mempool_and_get_txs_are_answered(self) -> None:
        manager, cheeses = funded("aa", self.clock)
        txs = payments(3)
        for tx in txs:
            manager.node.submit_tx(tx)
        raw = Raw(manager)
        raw.hello(features=["mempool", "something-new"])
        assert raw.proto.peer_features == {"mempool", "something-new"}
        [reply] = raw.send({"type": "GET_MEMPOOL", "id": 1})
        assert reply["type"] == "MEMPOOL" and reply["id"] == 1
        assert sorted(reply["txids"]) == sorted(txid(tx) for tx in txs)
        wanted = [txid(txs[2]), "0" * 40, txid(txs[0])]
        [reply] = raw.send({"type": "GET_TXS", "txids": wanted, "id": 2})
        assert reply == {
            "type": "TXS",
            "transactions": [txs[2], txs[0]],
            "id": 2,
        }  # the order asked, unknown left out
        for bad in (
            {"txids": []},
            {"txids": ["zz"]},
            {"txids": ["a" * 40] * 1001},
            {"txids": ["a" * 40], "smell": 5},
        ):
            [error] = raw.send(dict({"type": "GET_TXS", "id": 3}, **bad))
            assert error["type"] == "ERROR" and error["code"] == "bad-message", bad

    def test_get_txs_finds_confirmed_transactions_and_those_of_a_named_cheese(self) -> None:
        manager, cheeses = funded("aa", self.clock)
        tx = payments(1)[0]
        block = chain(1, parent=cheeses[-1])[0]
        from cheesecoin.testing.chain import mine_child

        block = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, [tx])
        manager.node.submit_cheese(block)
        raw = Raw(manager)
        raw.hello(features=["mempool"])
        ask = {"type": "GET_TXS", "txids": [txid(tx)], "smell": block["smell"], "id": 9}
        [reply] = raw.send(ask)
        assert reply["transactions"] == [tx]
        [reply] = raw.send({"type": "GET_TXS", "txids": [txid(tx)], "id": 10})
        assert reply["transactions"] == [tx], "a confirmed transaction is found on the best stack"

    def test_after_the_handshake_we_fetch_what_the_peer_has_that_we_lack(self) -> None:
        manager, _ = funded("aa", self.clock)
        txs = payments(3)
        manager.node.submit_tx(txs[0])
        raw = Raw(manager)
        replies = raw.hello(features=["mempool"])
        [ask] = [m for m in replies if m["type"] == "GET_MEMPOOL"]
        assert not [m for m in replies if m["type"] == "TX"], "a mempool peer got the TX feed"
        [fetch] = raw.send({"type": "MEMPOOL", "txids": [txid(tx) for tx in txs], "id": ask["id"]})
        assert fetch["type"] == "GET_TXS" and fetch["txids"] == [txid(txs[1]), txid(txs[2])]
        raw.send({"type": "TXS", "transactions": [txs[1], txs[2]], "id": fetch["id"]})
        assert all(txid(tx) in manager.node.mempool for tx in txs)
        assert manager.mempool_sync.fetched == 2

    def test_a_txs_reply_with_more_than_was_asked_costs_points(self) -> None:
        manager, _ = funded("aa", self.clock)
        txs = payments(2)
        raw = Raw(manager)
        [ask] = [m for m in raw.hello(features=["mempool"]) if m["type"] == "GET_MEMPOOL"]
        [fetch] = raw.send({"type": "MEMPOOL", "txids": [txid(txs[0])], "id": ask["id"]})
        raw.send({"type": "TXS", "transactions": txs, "id": fetch["id"]})
        assert raw.proto.score == 10 and txid(txs[1]) not in manager.node.mempool


class ConsensusTests(SynchronousTestCase):
    """CONSENSUS compares stacks with every peer, at most every 10 s."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_consensus_compares_stacks_with_every_peer_at_most_every_10_s(self) -> None:
        manager, _ = funded("aa", self.clock)
        one, two = Raw(manager, host="10.0.0.5"), Raw(manager, host="10.0.0.6")
        one.hello(node_id="51")
        two.hello(node_id="52")

        def stats(msgs):
            return [m for m in msgs if m["type"] == "STATS"]

        assert len(stats(one.send({"type": "CONSENSUS"}))) == 1 and len(stats(two.replies())) == 1
        assert stats(two.send({"type": "CONSENSUS"})) == [] and stats(one.replies()) == []
        self.clock.advance(CONSENSUS_INTERVAL)
        assert len(stats(two.send({"type": "CONSENSUS"}))) == 1 and len(stats(one.replies())) == 1
