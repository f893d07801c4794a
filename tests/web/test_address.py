"""``GET /api/address/{address}``: the balance and the address's transactions,
newest first (mempool first), paged with ``before``, on the SQLite index and
on the in-memory store, and right across a reorganisation."""

from __future__ import annotations

import json
import sqlite3

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.storage.reindex import reindex
from cheesecoin.storage.sqlite import DB_NAME, open_stack
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child
from cheesecoin.web import api
from tests.cases import case, temp_path

ALICE, BOB, CAROL = (key_from_seed(n) for n in ("alice", "bob", "carol"))
A, B, C = (address_of(k) for k in (ALICE, BOB, CAROL))
NETWORK = make_network()


def get(node, path: str):
    site = api.make_site(node)
    site._reactor = Clock()
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(f"GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n".encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def build(stack) -> list:
    """Alice mines 3 cheeses, then pays bob in cheeses 4 (two payments) and 5, bob
    pays carol in 6."""
    cheeses = [NETWORK.blue_cheese]

    def mine(txs=()):
        cheese = mine_child(cheeses[-1], NETWORK.bits, A, list(txs))
        assert stack.add_cheese(cheese).status == "added"
        cheeses.append(cheese)

    for _ in range(3):
        mine()
    mine([sign_tx(ALICE, B, 5, 1, 0, "one"), sign_tx(ALICE, B, 6, 1, 1, "two")])
    mine([sign_tx(ALICE, B, 7, 0, 2, "three")])
    mine([sign_tx(BOB, C, 4, 1, 0, "to carol")])
    return cheeses


class MemoryAddressHistoryTests(SynchronousTestCase):
    """The history on the in-memory store (SqliteAddressHistoryTests: the same on SQLite)."""

    backend = "memory"

    def setUp(self) -> None:
        if self.backend == "memory":
            stack = CheeseStack(NETWORK)
        else:
            stack = open_stack(str(temp_path(self)), NETWORK)
        self.addCleanup(stack.close)
        self.node = MemberNode(stack)
        self.node.cheeses = build(stack)

    def test_newest_first_with_the_mempool_first(self) -> None:
        pending = sign_tx(BOB, A, 2, 1, 1, "back")
        self.node.submit_tx(pending)
        status, page = get(self.node, f"/api/address/{B}")
        assert status == 200
        assert page["address"] == B and page["balance"] == 5 + 6 + 7 - 4 - 1
        assert page["pending_balance"] == page["balance"] - 3 and page["pending_nonce"] == 2
        listed = [
            (t["status"], t["sequence_number"], t["tx"]["memo"]) for t in page["transactions"]
        ]
        assert listed == [
            ("mempool", None, "back"),
            ("confirmed", 6, "to carol"),
            ("confirmed", 5, "three"),
            ("confirmed", 4, "two"),
            ("confirmed", 4, "one"),
        ]
        assert all(t["txid"] == txid(t["tx"]) for t in page["transactions"])
        assert get(self.node, f"/api/address/{C}")[1]["transactions"][0]["tx"]["memo"] == "to carol"
        nobody = "ab" * 32
        assert get(self.node, f"/api/address/{nobody}")[1] == {
            "address": nobody,
            "balance": 0,
            "nonce": 0,
            "pending_balance": 0,
            "pending_nonce": 0,
            "spendable": 0,
            "transactions": [],
        }

    def test_pages_back_with_before_and_never_splits_a_cheese(self) -> None:
        _, first = get(self.node, f"/api/address/{B}?count=2")
        # 6 and 5 fill the page; 4's two payments come whole on the next page
        assert [t["sequence_number"] for t in first["transactions"]] == [6, 5]
        _, second = get(self.node, f"/api/address/{B}?count=2&before=5")
        assert [t["tx"]["memo"] for t in second["transactions"]] == ["two", "one"]
        _, third = get(self.node, f"/api/address/{B}?count=2&before=4")
        assert third["transactions"] == []
        _, tight = get(self.node, f"/api/address/{B}?count=3")
        assert [t["sequence_number"] for t in tight["transactions"]] == [6, 5], (
            "half of cheese 4 on a page"
        )
        _, one = get(self.node, f"/api/address/{B}?count=1&before=5")
        assert [t["tx"]["memo"] for t in one["transactions"]] == ["two"], (
            "a cheese bigger than the page is cut"
        )

    def test_bad_queries_are_json_400(self) -> None:
        for query in ["count=0", "count=501", "count=x", "before=-1", "before=1e3"]:
            with case(query=query):
                status, answer = get(self.node, f"/api/address/{B}?{query}")
                assert status == 400 and answer["error"] == "bad-request"

    def test_a_bad_address_is_a_json_400(self) -> None:
        status, answer = get(self.node, "/api/address/XYZ")
        assert status == 400 and answer["error"] == "bad-address"

    def test_the_history_follows_a_reorganisation(self) -> None:
        cheeses = self.node.cheeses
        # a longer branch from cheese 4: bob pays carol twice instead (cheese 5' and 6'), and a 7'
        fork = [cheeses[4]]
        for txs in ([sign_tx(BOB, C, 1, 0, 0, "fork a")], [sign_tx(BOB, C, 1, 0, 1, "fork b")], []):
            fork.append(mine_child(fork[-1], NETWORK.bits, C, txs, start_nonce=50_000))
        for cheese in fork[1:]:
            self.node.submit_cheese(cheese)
        assert self.node.stack.tip.smell == fork[-1]["smell"]
        _, page = get(self.node, f"/api/address/{B}")
        confirmed = [
            (t["sequence_number"], t["tx"]["memo"])
            for t in page["transactions"]
            if t["status"] == "confirmed"
        ]
        assert confirmed == [(6, "fork b"), (5, "fork a"), (4, "two"), (4, "one")]
        pending = [t["tx"]["memo"] for t in page["transactions"] if t["status"] == "mempool"]
        # alice's abandoned payment to bob is pending again; bob's own to carol is
        # not (its nonce is taken on the new branch)
        assert pending == ["three"]
        assert "to carol" not in [tx["memo"] for tx in self.node.mempool.dump()]
        back = [cheeses[-1]]
        for _ in range(2):  # and back to the first branch, now longer again
            back.append(mine_child(back[-1], NETWORK.bits, A, [], start_nonce=90_000))
        for cheese in back[1:]:
            self.node.submit_cheese(cheese)
        _, page = get(self.node, f"/api/address/{B}")
        assert [t["tx"]["memo"] for t in page["transactions"] if t["status"] == "confirmed"] == [
            "to carol",
            "three",
            "two",
            "one",
        ]


def memos_of_bob(data_dir) -> list:
    """The memos of bob's history, read by a node over the database in ``data_dir``."""
    stack = open_stack(str(data_dir), NETWORK)
    try:
        return [
            t["tx"]["memo"] for t in get(MemberNode(stack), f"/api/address/{B}")[1]["transactions"]
        ]
    finally:
        stack.close()


class SqliteAddressHistoryTests(MemoryAddressHistoryTests):
    """The same history on the SQLite index."""

    backend = "sqlite"


class AddressIndexTests(SynchronousTestCase):
    """The SQLite address index: written with its cheese, rebuilt by reindex,
    added to a schema-1 database."""

    def test_the_index_is_written_with_its_cheese_and_rebuilt_by_reindex(self) -> None:
        tmp_path = temp_path(self)
        stack = open_stack(str(tmp_path), NETWORK)
        build(stack)
        stack.close()
        db = sqlite3.connect(str(tmp_path / DB_NAME))
        rows = db.execute("SELECT COUNT(*) FROM address_txs").fetchone()[0]
        assert rows == 4 * 2  # four payments, a sender and a receiver each
        db.execute("DELETE FROM address_txs")
        db.commit()
        db.close()
        result = reindex(str(tmp_path), NETWORK)
        assert result.kept == 7
        assert memos_of_bob(tmp_path) == ["to carol", "three", "two", "one"]

    def test_a_database_of_schema_1_gets_its_index_when_opened(self) -> None:
        tmp_path = temp_path(self)
        stack = open_stack(str(tmp_path), NETWORK)
        build(stack)
        stack.close()
        db = sqlite3.connect(str(tmp_path / DB_NAME))
        db.execute("DROP TABLE address_txs")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        db.commit()
        db.close()
        assert memos_of_bob(tmp_path) == ["to carol", "three", "two", "one"]
        db = sqlite3.connect(str(tmp_path / DB_NAME))
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
        db.close()
