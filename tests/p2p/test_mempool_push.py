"""Issue 26, findings 8 and 9: our mempool is pushed to a peer without the
``mempool`` feature only once it has shown it holds our work, at most once per
host per PUSH_INTERVAL; invalid transactions in a TXS reply cost what a
pushed TX costs."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p.errors import ERROR_POINTS
from cheesecoin.p2p.mempool_sync import PUSH_INTERVAL
from cheesecoin.testing.chain import mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NOW, Raw, chain, make_member
from tests.cases import clock_at


def funded(clock):
    cheeses = chain(3, miner=ADDR)
    manager = make_member("aa", clock, cheeses)
    return manager, cheeses


def payments(n: int, first_nonce: int = 0) -> list:
    return [sign_tx(KEY, BOB, 1, 1 + i, first_nonce + i, f"p{i}") for i in range(n)]


def pushed(replies) -> list:
    return [m for m in replies if m["type"] == "TX"]


class MempoolPushTests(SynchronousTestCase):
    """Claimed work gets nothing pushed; proven work gets it, once per host a while."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses = funded(self.clock)
        for tx in payments(3):
            self.manager.node.submit_tx(tx)
        self.ours = {
            "height": 3,
            "tip": self.cheeses[-1]["smell"],
            "work": str(self.manager.node.stack.work),
        }

    def test_a_hello_claiming_huge_work_on_an_unknown_tip_gets_nothing_pushed(self) -> None:
        raw = Raw(self.manager, host="10.0.0.7")
        replies = raw.hello(node_id="71", height=10**6, tip="ab" * 20, work=str(10**30))
        assert pushed(replies) == []
        [stats] = [m for m in replies if m["type"] == "STATS"]
        replies = raw.send(
            {
                "type": "STATS_REPLY",
                "height": 10**6,
                "tip": "cd" * 20,
                "work": str(10**30),
                "peers": 1,
                "id": stats["id"],
            }
        )
        assert pushed(replies) == [], "a STATS_REPLY naming a tip we do not know proves nothing"

    def test_a_peer_that_shows_our_tip_gets_it_once_per_host_per_interval(self) -> None:
        first = Raw(self.manager, host="10.0.0.7", port=40001)
        assert len(pushed(first.hello(node_id="71", **self.ours))) == 3
        again = Raw(self.manager, host="10.0.0.7", port=40002)
        assert pushed(again.hello(node_id="72", **self.ours)) == [], "pushed again on a reconnect"
        other = Raw(self.manager, host="10.0.0.8")
        assert len(pushed(other.hello(node_id="73", **self.ours))) == 3, "another host waited"
        self.clock.advance(PUSH_INTERVAL + 1)
        later = Raw(self.manager, host="10.0.0.7", port=40003)
        assert len(pushed(later.hello(node_id="74", **self.ours))) == 3

    def test_the_hosts_remembered_are_bounded(self) -> None:
        from cheesecoin.p2p import mempool_sync

        exchange = self.manager.mempool_sync
        for i in range(mempool_sync.MAX_PUSHED_HOSTS + 10):
            assert exchange._may_push(f"host{i}")
        assert len(exchange.pushed) == mempool_sync.MAX_PUSHED_HOSTS


class TxsReplyTests(SynchronousTestCase):
    """A TXS reply to our GET_TXS is judged as pushed TXs are."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, _ = funded(self.clock)

    def fetch(self, raw: Raw, txs: list) -> list:
        """Our GET_MEMPOOL to ``raw`` is answered with ``txs``' txids, our GET_TXS with ``txs``."""
        [ask] = [m for m in raw.hello(features=["mempool"]) if m["type"] == "GET_MEMPOOL"]
        [fetch] = raw.send({"type": "MEMPOOL", "txids": [txid(tx) for tx in txs], "id": ask["id"]})
        assert fetch["type"] == "GET_TXS"
        return raw.send({"type": "TXS", "transactions": txs, "id": fetch["id"]})

    def test_bad_signatures_cost_the_invalid_tx_points_each_and_end_the_connection(self) -> None:
        # Each at the sender's next nonce, so each signature is checked.
        bad = [dict(sign_tx(KEY, BOB, 1, 1, 0, f"b{i}"), signature="00" * 64) for i in range(50)]
        checked = []
        real = self.manager.node.submit_tx
        self.manager.node.submit_tx = lambda tx, source=None: checked.append(1) or real(tx, source)
        raw = Raw(self.manager)
        self.fetch(raw, bad)
        assert raw.proto.score >= 100 and raw.closed
        assert len(checked) == 100 // ERROR_POINTS["invalid-tx"], "the rest of the reply was read"
        assert len(self.manager.node.mempool) == 0

    def test_a_bad_signature_costs_what_a_pushed_tx_costs_and_says_why(self) -> None:
        txs = payments(3)
        txs[1] = dict(txs[1], signature="00" * 64)  # and txs[2] is then stale: its nonce follows it
        raw = Raw(self.manager)
        replies = self.fetch(raw, txs)
        assert raw.proto.score == ERROR_POINTS["invalid-tx"] + 1 and not raw.closed
        [error] = [m for m in replies if m["type"] == "ERROR"]
        assert error["code"] == "invalid-tx" and "tx-signature" in error["message"]
        assert txid(txs[0]) in self.manager.node.mempool
        pushed_raw = Raw(self.manager, host="10.0.0.10")  # the same three pushed as TX
        pushed_raw.hello(node_id="98", features=[])
        pushed_raw.send(*({"type": "TX", "tx": tx} for tx in txs))
        assert pushed_raw.proto.score == raw.proto.score

    def test_a_stale_transaction_costs_one_point_and_one_confirmed_meanwhile_nothing(self) -> None:
        txs = payments(2, first_nonce=5)  # nonces 5 and 6: the sender's next is 0
        raw = Raw(self.manager)
        self.fetch(raw, txs)
        assert raw.proto.score == 2 and not raw.closed
        tx = payments(1)[0]
        other = Raw(self.manager, host="10.0.0.11")
        replies = other.hello(node_id="98", features=["mempool"])
        [ask] = [m for m in replies if m["type"] == "GET_MEMPOOL"]
        [fetch] = other.send({"type": "MEMPOOL", "txids": [txid(tx)], "id": ask["id"]})
        stack = self.manager.node.stack
        tip = stack.get_cheese(stack.tip.smell)
        self.manager.node.submit_cheese(mine_child(tip, tip["bits"], ADDR, [tx]))  # confirmed now
        replies = other.send({"type": "TXS", "transactions": [tx], "id": fetch["id"]})
        assert other.proto.score == 0 and [m for m in replies if m["type"] == "ERROR"] == []
