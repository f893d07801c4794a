"""The stack as a tree: fork choice, reorganisations, orphans, ties, locators."""

from __future__ import annotations

import random

import pytest

from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.mining.templates import candidate
from cheesecoin.testing.chain import BASE_TIME, key_from_seed, make_network, mine_child

NET = make_network("stacktest", bits=2)
ALICE = key_from_seed("alice")
BOB = key_from_seed("bob")
CAROL = key_from_seed("carol")
A, B, C = (address_of(k) for k in (ALICE, BOB, CAROL))
NOW = BASE_TIME + 1_000_000


def new_stack(**kw) -> CheeseStack:
    return CheeseStack(NET, clock=lambda: NOW, **kw)


def branch(parent: dict, n: int, miner: str, txs=None, step: int = 10) -> list:
    out = []
    for i in range(n):
        parent = mine_child(
            parent, NET.bits, miner, (txs or {}).get(i, []), timestamp=parent["timestamp"] + step
        )
        out.append(parent)
    return out


def test_longest_branch_wins_and_ledger_follows():
    stack = new_stack()
    main = branch(NET.blue_cheese, 3, A)
    for c in main:
        stack.add_cheese(c)
    # A side branch from the Blue Cheese, two cheeses: less work, no switch.
    side = branch(NET.blue_cheese, 2, B, step=11)
    for c in side:
        r = stack.add_cheese(c)
        assert not r.tip_changed
    assert stack.tip.smell == main[-1]["smell"]
    assert stack.ledger.balances == {A: 150}
    # Two more on the side branch: 4 > 3, a reorganisation three deep.
    more = branch(side[-1], 2, B, step=11)
    stack.add_cheese(more[0])
    assert stack.tip.smell == main[-1]["smell"]  # 3 == 3: a tie keeps the first seen
    r = stack.add_cheese(more[1])
    assert r.reorganized
    assert [c["smell"] for c in r.disconnected] == [c["smell"] for c in reversed(main)]
    assert [c["smell"] for c in r.connected] == [c["smell"] for c in side + more]
    assert stack.tip.smell == more[-1]["smell"]
    assert stack.ledger.balances == {B: 200}
    assert stack.height == 4
    assert not stack.is_best(main[0]["smell"]) and stack.get_cheese(main[0]["smell"]) == main[0]


def test_tie_first_seen_wins():
    stack = new_stack()
    one = branch(NET.blue_cheese, 2, A)
    two = branch(NET.blue_cheese, 2, B, step=12)
    for c in one + two:
        stack.add_cheese(c)
    assert stack.tip.smell == one[-1]["smell"]
    other = new_stack()
    for c in two + one:
        other.add_cheese(c)
    assert other.tip.smell == two[-1]["smell"]


def test_reorg_hands_abandoned_transactions_to_the_mempool():
    node = MemberNode(new_stack())
    base = branch(NET.blue_cheese, 2, A)  # A has 100
    pay_b = sign_tx(ALICE, B, 30, 2, 0, "on the old branch")
    pay_c = sign_tx(ALICE, C, 5, 1, 1, "also old")
    old = branch(base[-1], 1, C, {0: [pay_b, pay_c]})
    for c in base + old:
        node.submit_cheese(c)
    assert node.stack.ledger.balance(B) == 30 and len(node.mempool) == 0
    # A competing branch that holds only pay_b, two cheeses long: more work.
    new = branch(base[-1], 2, C, {0: [pay_b]}, step=13)
    for c in new:
        node.submit_cheese(c)
    assert node.stack.tip.smell == new[-1]["smell"]
    # pay_b is confirmed on the new branch; pay_c comes back to the mempool.
    assert [txid(t) for _, t in node.mempool.items()] == [txid(pay_c)]
    assert node.stack.ledger.balance(B) == 30
    assert node.tx_status(txid(pay_b))["status"] == "confirmed"
    assert node.tx_status(txid(pay_c))["status"] == "mempool"


def test_orphans_out_of_order_are_connected():
    stack = new_stack()
    cheeses = branch(NET.blue_cheese, 12, A)
    shuffled = cheeses[1:]
    random.Random(7).shuffle(shuffled)
    for c in shuffled:
        r = stack.add_cheese(c)
        assert r.status in ("orphan", "duplicate")
    assert stack.height == 0 and len(stack.orphans) == 11
    r = stack.add_cheese(cheeses[0])
    assert stack.height == 12 and len(stack.orphans) == 0
    assert len(r.accepted) == 12 and len(r.connected) == 12


def test_orphan_pool_is_bounded():
    stack = new_stack(max_orphans=50)
    parent = {"smell": "ab" * 20, "sequence_number": 5, "timestamp": BASE_TIME}
    for i in range(1000):
        stack.add_cheese(mine_child(parent, NET.bits, A, note=str(i)))
    assert len(stack.orphans) == 50


def test_invalid_cheese_deep_in_a_longer_branch_keeps_the_best_valid_prefix():
    stack = new_stack()
    main = branch(NET.blue_cheese, 3, A)
    for c in main:
        stack.add_cheese(c)
    # B has no coins: a payment from B on the side branch's 5th cheese is invalid.
    bad_tx = sign_tx(BOB, C, 10, 0, 0)
    side = branch(NET.blue_cheese, 4, C, step=9)
    bad = branch(side[-1], 3, C, {0: [bad_tx]}, step=9)
    for c in side:
        stack.add_cheese(c)
    assert stack.tip.smell == side[-1]["smell"]  # 4 > 3
    with pytest.raises(InvalidCheese) as info:
        stack.add_cheese(bad[0])
    assert info.value.rule == "tx-balance"
    for c in bad[1:]:
        with pytest.raises(InvalidCheese):
            stack.add_cheese(c)
    assert stack.tip.smell == side[-1]["smell"]
    assert stack.ledger.balances == {C: 200}


def test_invalid_cheese_on_a_side_branch_is_found_when_it_would_win():
    stack = new_stack()
    main = branch(NET.blue_cheese, 3, A)
    for c in main:
        stack.add_cheese(c)
    side = branch(NET.blue_cheese, 2, C, step=9)
    bad = branch(side[-1], 3, C, {0: [sign_tx(BOB, C, 10, 0, 0)]}, step=9)
    for c in side + bad[:1]:  # 3 cheeses: a tie, not examined yet
        stack.add_cheese(c)
    with pytest.raises(InvalidCheese):
        stack.add_cheese(bad[1])  # would win; its parent is invalid
    assert stack.tip.smell == main[-1]["smell"]
    assert stack.ledger.balances == {A: 150}
    with pytest.raises(InvalidCheese) as info:
        stack.add_cheese(bad[2])
    assert info.value.rule == "bad-parent"


def test_future_timestamp_is_accepted_later():
    now = [float(BASE_TIME)]
    stack = CheeseStack(NET, clock=lambda: now[0])
    future = mine_child(NET.blue_cheese, NET.bits, A, timestamp=BASE_TIME + 500)
    with pytest.raises(InvalidCheese) as info:
        stack.add_cheese(future)
    assert info.value.rule == "timestamp-future" and info.value.rule_number == 4
    now[0] = BASE_TIME + 400
    assert stack.add_cheese(future).status == "added"


def test_tampered_body_does_not_blacklist_the_good_cheese():
    stack = new_stack()
    good = branch(NET.blue_cheese, 1, A, {0: []})[0]
    tampered = dict(good, unit_of_information={"miner": B, "transactions": []})
    with pytest.raises(InvalidCheese) as info:
        stack.add_cheese(tampered)
    assert info.value.rule == "smell"
    assert stack.add_cheese(good).status == "added"


def test_duplicate_and_wrong_blue_cheese():
    stack = new_stack()
    c = branch(NET.blue_cheese, 1, A)[0]
    assert stack.add_cheese(c).status == "added"
    assert stack.add_cheese(c).status == "duplicate"
    assert stack.add_cheese(NET.blue_cheese).status == "duplicate"
    other = make_network("other", bits=2).blue_cheese
    with pytest.raises(InvalidCheese):
        stack.add_cheese(other)


def test_locator_and_ranges():
    stack = new_stack()
    cheeses = branch(NET.blue_cheese, 40, A)
    for c in cheeses:
        stack.add_cheese(c)
    loc = stack.serving.locator()
    heights = [stack.nodes[s].height for s in loc]
    assert heights[:10] == list(range(40, 30, -1))
    assert heights[-1] == 0
    steps = [a - b for a, b in zip(heights, heights[1:])]
    assert steps[9:-1] == sorted(steps[9:-1]) and steps[10] == 2 * steps[9]
    assert stack.serving.fork_height(loc) == 40
    assert stack.serving.fork_height(["ff" * 20, cheeses[9]["smell"]]) == 10
    assert stack.serving.fork_height(["ff" * 20]) == 0
    texts = stack.serving.range_texts(5, 3)
    assert len(texts) == 3 and '"sequence_number":5' in texts[0]
    assert len(stack.serving.range_texts(0, 1000)) == 41  # whole stack (500 cap not reached)
    assert len(stack.serving.range_texts(0, 500, max_bytes=2000)) < 10


def test_template_is_a_child_of_the_tip():
    stack = new_stack()
    for c in branch(NET.blue_cheese, 2, A):
        stack.add_cheese(c)
    t = candidate(stack, B, [], timestamp=BASE_TIME)
    assert t["parent_smell"] == stack.tip.smell and t["sequence_number"] == 3
    assert t["timestamp"] == stack.tip.timestamp and t["bits"] == NET.bits


def test_an_orphan_pool_of_size_zero_keeps_nothing():
    stack = new_stack(max_orphans=0)
    parent = {"smell": "cd" * 20, "sequence_number": 5, "timestamp": BASE_TIME}
    assert stack.add_cheese(mine_child(parent, NET.bits, A)).status == "orphan"
    assert len(stack.orphans) == 0
