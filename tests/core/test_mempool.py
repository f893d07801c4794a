"""The mempool rules (cheesecoin.mempool) and how a MemberNode keeps it in step with its stack."""

from __future__ import annotations

import json
from typing import List

import pytest

from cheesecoin.core.errors import InvalidTx
from cheesecoin.core.ledger import Ledger
from cheesecoin.core.mempool import Mempool
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child

ALICE = key_from_seed("alice")
BOB = key_from_seed("bob")
CAROL = key_from_seed("carol")
A, B, C = (address_of(k) for k in (ALICE, BOB, CAROL))
MINER = address_of(key_from_seed("miner"))


def _ledger(**balances: int) -> Ledger:
    ledger = Ledger()
    names = {"alice": A, "bob": B, "carol": C}
    ledger.balances = {names[n]: v for n, v in balances.items()}
    return ledger


def _rule(call) -> str:
    with pytest.raises(InvalidTx) as info:
        call()
    return info.value.rule


# -- the pure mempool ---------------------------------------------------------------------


def test_chain_of_nonces_and_pending_figures() -> None:
    pool = Mempool(_ledger(alice=100))
    first = sign_tx(ALICE, B, 10, 1, 0)
    assert pool.add(first) == (txid(first), True)
    assert pool.add(first) == (txid(first), False)  # already here
    pool.add(sign_tx(ALICE, C, 20, 2, 1))
    assert pool.pending_nonce(A) == 2 and pool.pending_nonce(B) == 0
    assert pool.pending_balance(A) == 100 - 11 - 22
    assert pool.pending_balance(B) == 10 and pool.pending_balance(C) == 20
    assert len(pool) == 2


def test_incoming_pending_coins_are_not_spendable_until_confirmed() -> None:
    pool = Mempool(_ledger(alice=100, bob=3))
    pool.add(sign_tx(ALICE, B, 10, 1, 0))
    # Bob sees 13 coming, but only his 3 confirmed coins can pay now; the
    # mempool refuses exactly what "spendable" says it would.
    assert pool.pending_balance(B) == 13 and pool.spendable(B) == 3
    with pytest.raises(InvalidTx) as refused:
        pool.add(sign_tx(BOB, C, 4, 0, 0))
    assert refused.value.rule == "tx-balance"
    pool.add(sign_tx(BOB, C, 2, 1, 0))
    assert pool.spendable(B) == 0 and pool.spendable(A) == 100 - 11


def test_nonce_gaps_and_old_nonces_are_refused() -> None:
    pool = Mempool(_ledger(alice=100))
    assert _rule(lambda: pool.add(sign_tx(ALICE, B, 1, 0, 1))) == "tx-nonce"
    pool.add(sign_tx(ALICE, B, 1, 0, 0))
    assert _rule(lambda: pool.add(sign_tx(ALICE, B, 1, 0, 2))) == "tx-nonce"
    pool.ledger.nonces[A] = 5
    assert _rule(lambda: Mempool(pool.ledger).add(sign_tx(ALICE, B, 1, 0, 4))) == "tx-nonce"


def test_double_spend_needs_a_higher_fee_and_the_coins() -> None:
    pool = Mempool(_ledger(alice=20))
    pay_bob = sign_tx(ALICE, B, 15, 1, 0)
    pool.add(pay_bob)
    pay_carol = sign_tx(ALICE, C, 15, 1, 0)  # same nonce, same fee
    assert _rule(lambda: pool.add(pay_carol)) == "tx-fee"
    assert _rule(lambda: pool.add(sign_tx(ALICE, C, 15, 0, 0))) == "tx-fee"
    # Both cannot be paid: a second transaction after the first lacks coins.
    assert _rule(lambda: pool.add(sign_tx(ALICE, C, 15, 1, 1))) == "tx-balance"
    assert _rule(lambda: pool.add(sign_tx(ALICE, C, 19, 5, 0))) == "tx-balance"  # more than she has
    better = sign_tx(ALICE, C, 15, 2, 0)
    tx_id, new = pool.add(better)
    assert new and txid(pay_bob) not in pool and pool.get(tx_id) == better
    assert pool.pending_balance(B) == 0 and pool.pending_balance(C) == 15


def test_replacement_keeps_later_transactions_while_they_are_covered() -> None:
    pool = Mempool(_ledger(alice=30))
    first = sign_tx(ALICE, B, 5, 1, 0)
    second = sign_tx(ALICE, B, 5, 1, 1)
    third = sign_tx(ALICE, B, 5, 1, 2)
    for tx in (first, second, third):
        pool.add(tx)
    pool.add(sign_tx(ALICE, C, 5, 2, 0))  # 7 instead of 6: the rest still fits
    assert txid(second) in pool and txid(third) in pool and txid(first) not in pool
    pool.add(sign_tx(ALICE, C, 12, 6, 1))  # 18 instead of 6: 7 + 18 + 6 > 30
    assert txid(third) not in pool and pool.pending_nonce(A) == 2


def test_format_self_payment_and_signature() -> None:
    pool = Mempool(_ledger(alice=100))
    assert _rule(lambda: pool.add({"from": A})) == "tx-fields"
    assert _rule(lambda: pool.add(dict(sign_tx(ALICE, B, 1, 0, 0), amount=1.0))) == "tx-fields"
    assert _rule(lambda: pool.add(sign_tx(ALICE, A, 1, 0, 0))) == "tx-self"
    forged = dict(sign_tx(ALICE, B, 1, 0, 0), amount=2)
    assert _rule(lambda: pool.add(forged)) == "tx-signature"
    assert len(pool) == 0


def test_eviction_when_full_takes_the_lowest_fee_at_the_end_of_a_chain() -> None:
    pool = Mempool(_ledger(alice=100, bob=100, carol=100), max_size=3)
    a0 = sign_tx(ALICE, B, 1, 1, 0)  # low fee, but alice's later one is last in her chain
    a1 = sign_tx(ALICE, B, 1, 5, 1)
    b0 = sign_tx(BOB, C, 1, 3, 0)
    for tx in (a0, a1, b0):
        pool.add(tx)
    assert (
        _rule(lambda: pool.add(sign_tx(CAROL, A, 1, 3, 0))) == "mempool-full"
    )  # not above the lowest end (3)
    c0 = sign_tx(CAROL, A, 1, 4, 0)
    pool.add(c0)
    assert txid(b0) not in pool  # bob's chain ends with fee 3, the lowest end
    assert {txid(a0), txid(a1), txid(c0)} == set(dict(pool.items()))
    assert len(pool) == 3


def test_select_is_by_fee_but_keeps_nonce_order() -> None:
    pool = Mempool(_ledger(alice=100, bob=100))
    a0 = sign_tx(ALICE, C, 1, 1, 0)
    a1 = sign_tx(ALICE, C, 1, 9, 1)
    b0 = sign_tx(BOB, C, 1, 5, 0)
    for tx in (a0, a1, b0):
        pool.add(tx)
    assert pool.select(10) == [b0, a0, a1]
    assert pool.select(1) == [b0]


# -- the mempool of a member node -----------------------------------------------------------


class Chain:
    """A member node on a bits-1 network, with helpers to mine on any parent."""

    def __init__(self, data_dir=None) -> None:
        self.network = make_network()
        self.node = MemberNode(CheeseStack(self.network), data_dir=data_dir)
        self.cheeses = {self.network.smell: self.network.blue_cheese}

    def mine(
        self, parent: dict, miner: str = MINER, txs: List[dict] = (), nonce_from: int = 0
    ) -> dict:
        cheese = mine_child(parent, self.network.bits, miner, list(txs), start_nonce=nonce_from)
        self.node.submit_cheese(cheese)
        self.cheeses[cheese["smell"]] = cheese
        return cheese

    def tip(self) -> dict:
        return self.node.stack.get_by_height(self.node.stack.height)


def _funded(data_dir=None) -> Chain:
    chain = Chain(data_dir)
    chain.mine(chain.tip(), miner=A)  # alice: 50
    return chain


def test_confirmed_transactions_leave_the_mempool() -> None:
    chain = _funded()
    node = chain.node
    tx = sign_tx(ALICE, B, 10, 2, 0)
    later = sign_tx(ALICE, B, 10, 2, 1)
    tx_id, new = node.submit_tx(tx, "api")
    node.submit_tx(later)
    assert new and node.tx_status(tx_id)["status"] == "mempool"
    chain.mine(chain.tip(), txs=[tx])
    assert tx_id not in node.mempool and txid(later) in node.mempool
    assert node.tx_status(tx_id) == {"tx": tx, "status": "confirmed", "sequence_number": 2}
    assert node.balance(A) == {
        "address": A,
        "balance": 38,
        "nonce": 1,
        "pending_balance": 26,
        "pending_nonce": 2,
        "spendable": 26,
    }
    with pytest.raises(InvalidTx) as info:
        node.submit_tx(tx)  # once confirmed, its nonce is used
    assert info.value.rule == "tx-nonce"


def test_tx_listeners_hear_of_new_transactions_only() -> None:
    chain = _funded()
    heard = []
    chain.node.tx_listeners.append(lambda tx_id, tx, source: heard.append((tx_id, source)))
    tx = sign_tx(ALICE, B, 1, 0, 0)
    chain.node.submit_tx(tx, "api")
    chain.node.submit_tx(tx, "peer")
    with pytest.raises(InvalidTx):
        chain.node.submit_tx(sign_tx(ALICE, B, 1, 0, 5), "api")
    assert heard == [(txid(tx), "api")]


def test_reorganisation_returns_abandoned_transactions() -> None:
    chain = _funded()
    node = chain.node
    fork_point = chain.tip()  # alice has 50 here
    paid_on_a = sign_tx(ALICE, B, 10, 1, 0)
    only_on_a = sign_tx(ALICE, C, 5, 1, 1)
    a1 = chain.mine(fork_point, txs=[paid_on_a])
    a2 = chain.mine(a1, txs=[only_on_a])
    pending = sign_tx(ALICE, B, 1, 0, 2)
    node.submit_tx(pending)
    assert node.stack.height == 3 and len(node.mempool) == 1
    # A longer branch from the fork point holds only the first payment.
    b1 = chain.mine(fork_point, txs=[paid_on_a], nonce_from=1000)
    b2 = chain.mine(b1, nonce_from=1000)
    assert node.stack.tip.smell == a2["smell"]  # a tie: the first seen stays
    b3 = chain.mine(b2, nonce_from=1000)
    assert node.stack.tip.smell == b3["smell"]
    # only_on_a came back (valid again), then pending after it; paid_on_a is confirmed on B.
    assert [tx for _, tx in sorted(node.mempool.items(), key=lambda i: i[1]["nonce"])] == [
        only_on_a,
        pending,
    ]
    assert node.tx_status(txid(paid_on_a))["sequence_number"] == 2
    assert node.tx_status(txid(only_on_a))["status"] == "mempool"


def test_reorganisation_drops_what_the_new_branch_made_invalid() -> None:
    chain = _funded()
    node = chain.node
    fork_point = chain.tip()
    to_bob = sign_tx(ALICE, B, 40, 0, 0)
    chain.mine(fork_point, txs=[to_bob])
    to_carol = sign_tx(ALICE, C, 40, 0, 0)  # a double spend of the same coins
    b1 = chain.mine(fork_point, txs=[to_carol], nonce_from=1000)
    chain.mine(b1, nonce_from=1000)
    assert node.tx_status(txid(to_carol))["status"] == "confirmed"
    assert txid(to_bob) not in node.mempool and node.tx_status(txid(to_bob)) is None


def test_mempool_survives_a_restart(tmp_path) -> None:
    chain = _funded(str(tmp_path))
    txs = [sign_tx(ALICE, B, 5, i + 1, i) for i in range(3)] + [sign_tx(ALICE, C, 1, 0, 3)]
    for tx in txs:
        chain.node.submit_tx(tx)
    chain.node.save_mempool()
    saved = json.loads((tmp_path / "mempool.json").read_text())
    assert len(saved) == 4
    # A new node over the same stack: everything comes back.
    again = MemberNode(chain.node.stack, data_dir=str(tmp_path))
    assert again.load_mempool() == 4
    assert dict(again.mempool.items()) == dict(chain.node.mempool.items())
    # Once the first is confirmed, the rest reloads and the confirmed one does not.
    chain.mine(chain.tip(), txs=txs[:1])
    third = MemberNode(chain.node.stack, data_dir=str(tmp_path))
    assert third.load_mempool() == 3
    assert txid(txs[0]) not in third.mempool


def test_corrupt_or_hostile_saved_mempool_is_ignored(tmp_path) -> None:
    chain = _funded(str(tmp_path))
    good = sign_tx(ALICE, B, 1, 0, 0)
    (tmp_path / "mempool.json").write_text(
        json.dumps([{"junk": 1}, 7, "x", good, dict(good, nonce=1)])
    )
    assert chain.node.load_mempool() == 1
    (tmp_path / "mempool.json").write_text("{not json")
    assert MemberNode(chain.node.stack, data_dir=str(tmp_path)).load_mempool() == 0
