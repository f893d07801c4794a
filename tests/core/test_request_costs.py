"""What the stack serves to peers costs what the answer costs (issue 26,
findings 1 and 7): a confirmed transaction is one index look-up and one slice
of its cheese's stored text, a header comes from memory, a GET_TXS dedupes
its txids, the mempool's txids are not computed again."""

from __future__ import annotations

import json
from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core import serving
from cheesecoin.core.cheese import header_of
from cheesecoin.core.mempool import Mempool
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.p2p.mempool_sync import MempoolExchange
from cheesecoin.storage.sqlite import open_stack
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child, payment_stack
from tests.cases import temp_path

NET = make_network("costs", bits=1, max_transactions=1000, reward=1000)
CHEESES = payment_stack(NET, 56, 40, n_keys=20, seed="costs")  # cheeses 21..56 carry 40 payments
NOW = 4e9


class Counting:
    """Wraps a store and counts the calls that read or decode whole cheeses."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: List[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name in ("get", "get_text"):

            def counted(*args: Any, **kw: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kw)

            return counted
        return attr


class FakeRelay:
    """The relay's view the mempool exchange reads: cheeses sent on before validation."""

    def __init__(self) -> None:
        self.pending: dict = {}

    def relayed(self, smell: str):
        return self.pending.get(smell)


class FakeManager:
    def __init__(self, node: MemberNode) -> None:
        self.node = node
        self.relay = FakeRelay()


def every_tx(cheeses):
    return [
        (c["sequence_number"], tx)
        for c in cheeses
        for tx in c["unit_of_information"]["transactions"]
    ]


class ConfirmedTransactionTests(SynchronousTestCase):
    """The txid index: (height, position, place in the text)."""

    def check_stack(self, stack: CheeseStack) -> None:
        for height, tx in every_tx(CHEESES[1:]):
            assert stack.serving.confirmed_tx(txid(tx)) == (height, tx)
            assert stack.tx_height(txid(tx)) == height
        assert stack.serving.confirmed_tx("0" * 40) is None

    def test_every_confirmed_transaction_is_found_in_memory_on_disk_and_reloaded(self) -> None:
        memory = CheeseStack(NET, clock=lambda: NOW)
        for c in CHEESES[1:]:
            memory.add_cheese(c, check_signatures=False)
        self.check_stack(memory)
        path = str(temp_path(self))
        disk = open_stack(path, NET, clock=lambda: NOW)
        with disk.batch():
            for c in CHEESES[1:]:
                disk.add_cheese(c, check_signatures=False)
        self.check_stack(disk)
        disk.close()
        again = open_stack(path, NET, clock=lambda: NOW)
        self.addCleanup(again.close)
        again.store = counting = Counting(again.store)
        self.check_stack(again)
        assert counting.calls == [], "a cheese was read whole or decoded for one transaction"

    def test_a_transaction_with_a_note_and_unicode_memo_is_sliced_right(self) -> None:
        key = key_from_seed("costs-0")
        stack = open_stack(str(temp_path(self)), NET, clock=lambda: NOW)
        self.addCleanup(stack.close)
        for c in CHEESES[1:21]:
            stack.add_cheese(c, check_signatures=False)
        txs = [
            sign_tx(key, address_of(key_from_seed("costs-1")), 1, 1, n, memo)
            for n, memo in enumerate(["ché", "", '😀 " ]}} ,', "z"])
        ]
        cheese = mine_child(CHEESES[20], NET.bits, address_of(key), txs, note="a note ]}}")
        stack.add_cheese(cheese)
        stack.store._cache.clear()  # read from the database, not the cache of recent cheeses
        for pos, tx in enumerate(txs):
            height, at, from_end, length = serving.unpack(stack.tx_index[txid(tx)])
            assert (height, at) == (21, pos)
            assert json.loads(stack.store.text_slice(cheese["smell"], from_end, length)) == tx
            assert stack.serving.confirmed_tx(txid(tx)) == (21, tx)

    def test_in_memory_a_transaction_is_taken_from_its_body_with_one_txid(self) -> None:
        stack = CheeseStack(NET, clock=lambda: NOW)  # MemoryStore: bodies held decoded
        for c in CHEESES[1:]:
            stack.add_cheese(c, check_signatures=False)
        stack.store = counting = Counting(stack.store)
        computed: List[int] = []
        real = serving.txid
        serving.txid = lambda tx: computed.append(1) or real(tx)  # type: ignore[assignment]
        self.addCleanup(setattr, serving, "txid", real)
        tx = CHEESES[-1]["unit_of_information"]["transactions"][-1]
        assert stack.serving.confirmed_tx(txid(tx)) == (56, tx)
        assert counting.calls == ["get"] and len(computed) == 1, "text rebuilt or txids recomputed"

    def test_an_entry_pointing_elsewhere_falls_back_to_the_decoded_cheese(self) -> None:
        stack = open_stack(str(temp_path(self)), NET, clock=lambda: NOW)
        self.addCleanup(stack.close)
        for c in CHEESES[1:30]:
            stack.add_cheese(c, check_signatures=False)
        tx = CHEESES[25]["unit_of_information"]["transactions"][3]
        height, pos, from_end, length = serving.unpack(stack.tx_index[txid(tx)])
        stack.tx_index[txid(tx)] = serving.pack(height, pos, from_end + 7, length)
        assert stack.serving.confirmed_tx(txid(tx)) == (25, tx)

    def test_a_reorganisation_takes_the_abandoned_transactions_out_of_the_index(self) -> None:
        stack = CheeseStack(NET, clock=lambda: NOW)
        for c in CHEESES[1:30]:
            stack.add_cheese(c, check_signatures=False)
        gone = CHEESES[29]["unit_of_information"]["transactions"][0]
        side = mine_child(CHEESES[28], NET.bits, address_of(key_from_seed("x")))
        stack.add_cheese(side)
        stack.add_cheese(mine_child(side, NET.bits, address_of(key_from_seed("x"))))
        assert stack.serving.confirmed_tx(txid(gone)) is None
        assert stack.tx_height(txid(gone)) is None


class GetTxsTests(SynchronousTestCase):
    """GET_TXS: each txid once, no cheese decoded for a confirmed one."""

    def setUp(self) -> None:
        self.stack = open_stack(str(temp_path(self)), NET, clock=lambda: NOW)
        self.addCleanup(self.stack.close)
        with self.stack.batch():
            for c in CHEESES[1:]:
                self.stack.add_cheese(c, check_signatures=False)
        self.node = MemberNode(self.stack, clock=lambda: NOW)
        fake = FakeManager(self.node)
        self.exchange = MempoolExchange(self.node, Clock(), fake, fake.relay)

    def test_duplicates_are_answered_once_and_looked_up_once(self) -> None:
        last = CHEESES[-1]["unit_of_information"]["transactions"][-1]
        looked: List[str] = []
        real = self.node.tx_status
        self.node.tx_status = lambda t: looked.append(t) or real(t)  # type: ignore[method-assign]
        assert self.exchange.find_txs([txid(last)] * 1000, None) == [last]
        assert looked == [txid(last)]

    def test_a_cheese_on_the_best_stack_is_not_decoded_and_a_side_cheese_once(self) -> None:
        self.stack.store = counting = Counting(self.stack.store)
        txs = CHEESES[40]["unit_of_information"]["transactions"]
        assert self.exchange.find_txs([txid(t) for t in txs], CHEESES[40]["smell"]) == txs
        assert counting.calls == []
        key = key_from_seed("costs-0")
        to = address_of(key_from_seed("costs-1"))
        side_txs = [sign_tx(key, to, 1, 1, 999, f"s{i}") for i in range(3)]
        side = mine_child(CHEESES[-2], NET.bits, address_of(key), side_txs, note="side")
        self.exchange.relay.pending[side["smell"]] = side  # a compact cheese in validation
        computed: List[int] = []
        real = serving.txid
        serving.txid = lambda tx: computed.append(1) or real(tx)  # type: ignore[assignment]
        self.addCleanup(setattr, serving, "txid", real)
        for _ in range(3):
            found = self.exchange.find_txs([txid(side_txs[2]), "1" * 40], side["smell"])
            assert found == [side_txs[2]]
        assert len(computed) == 3 and list(self.stack.serving.side) == [side["smell"]]

    def test_the_side_cache_is_bounded(self) -> None:
        served = self.stack.serving
        for i in range(serving.SIDE_CHEESES + 5):
            served.cheese_txs(f"{i:040x}", CHEESES[30])
        assert len(served.side) == serving.SIDE_CHEESES
        assert f"{serving.SIDE_CHEESES + 4:040x}" in served.side and f"{0:040x}" not in served.side

    def test_a_side_cheese_txids_are_computed_once(self) -> None:
        served = self.stack.serving
        computed: List[int] = []
        real = serving.txid
        serving.txid = lambda tx: computed.append(1) or real(tx)  # type: ignore[assignment]
        self.addCleanup(setattr, serving, "txid", real)
        for _ in range(5):
            found = served.cheese_txs("ab" * 20, CHEESES[30])
        txs = CHEESES[30]["unit_of_information"]["transactions"]
        assert len(computed) == 40 and sorted(found) == sorted(txid(t) for t in txs)

    def test_get_mempool_takes_the_mempool_txids_without_computing_them(self) -> None:
        pool = Mempool(self.stack.ledger)
        keys = [key_from_seed(f"costs-{i}") for i in range(5)]
        for i, key in enumerate(keys):
            sender = address_of(key)
            for n in range(4):
                pool.add(
                    sign_tx(
                        key,
                        address_of(keys[(i + 1) % 5]),
                        1,
                        1 + (n * 7 + i) % 5,
                        self.stack.ledger.next_nonce(sender) + n,
                        "",
                    )
                )
        assert pool.select_ids(100) == [txid(tx) for tx in pool.select(100)]
        assert pool.select_ids(7) == [txid(tx) for tx in pool.select(7)]


class HeaderTests(SynchronousTestCase):
    """Headers from the tree's nodes, never from stored bodies."""

    def test_headers_come_from_memory_after_adding_and_after_loading(self) -> None:
        path = str(temp_path(self))
        stack = open_stack(path, NET, clock=lambda: NOW)
        for c in CHEESES[1:]:
            stack.add_cheese(c, check_signatures=False)
        expected = [header_of(c) for c in CHEESES]
        stack.store = counting = Counting(stack.store)
        assert [stack.serving.header_at(h) for h in range(1, 57)] == expected[1:]
        assert counting.calls == []
        stack.store = counting.store
        stack.close()
        again = open_stack(path, NET, clock=lambda: NOW)
        self.addCleanup(again.close)
        again.store = counting = Counting(again.store)
        assert [again.serving.header_at(h) for h in range(1, 57)] == expected[1:]
        assert counting.calls == [] and again.serving.header_at(57) is None
        assert again.serving.header_at(0) == expected[0]  # the Blue Cheese: from its text
