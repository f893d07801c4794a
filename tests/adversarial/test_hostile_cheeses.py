"""Invalid cheeses (after Bitcoin Core's p2p_invalid_block.py and feature_block.py):
every validity rule of docs/protocol.md section 3 broken, at the tip and deep in a
long branch, a future timestamp accepted later, a tampered body that does not
blacklist the real cheese, a longer branch hiding an invalid cheese, and
double spends across reorganisations. Fake transports and a task.Clock.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List

import pytest
from hostile import (
    ADDR,
    BOB,
    KEY,
    NETWORK,
    NOW,
    Raw,
    chain,
    make_member,
    member_on,
    mine,
    new_clock,
    ready_raw,
    same_chain,
    snapshot,
)

from cheesecoin.core.cheese import compute_smell, meets_pow
from cheesecoin.core.errors import RULE_NUMBERS
from cheesecoin.core.rules import FUTURE_LIMIT
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.p2p import protocol as protocol_mod
from cheesecoin.testing.chain import key_from_seed, make_network

CAROL = address_of(key_from_seed("hostile-carol"))
OTHER = "cd" * 32


def _no_pow(parent: dict) -> dict:
    """A child whose smell is right but misses the proof of work."""
    cheese = mine(parent, OTHER)
    for nonce in range(1000):
        cheese["nonce"] = nonce
        smell = compute_smell(cheese)
        if not meets_pow(smell, 1):
            cheese["smell"] = smell
            return cheese
    raise AssertionError("no failing nonce")


# Each case: the rule's name, and a maker of a cheese on top of the funded
# tip (ADDR holds 100 coins) that breaks that rule and only that one.
BREAKERS: Dict[str, Callable[[dict], dict]] = {
    "fields": lambda p: dict(mine(p, OTHER), extra=1),
    "info-keys": lambda p: mine(
        p, OTHER, unit_of_information={"miner": OTHER, "transactions": [], "x": 1}
    ),
    "note": lambda p: mine(
        p, OTHER, unit_of_information={"miner": OTHER, "transactions": [], "note": "n" * 257}
    ),
    "sequence_number": lambda p: mine(p, OTHER, sequence_number=p["sequence_number"] + 2),
    "bits": lambda p: mine(p, OTHER, bits=2),
    "timestamp": lambda p: mine(p, OTHER, timestamp=p["timestamp"] - 1),
    "timestamp-future": lambda p: mine(p, OTHER, timestamp=NOW + FUTURE_LIMIT + 1),
    "smell": lambda p: dict(mine(p, OTHER), smell="00" + "1" * 38),
    "proof-of-work": _no_pow,
    "miner-address": lambda p: mine(p, "XYZ"),
    "max-transactions": lambda p: mine(
        p, OTHER, [sign_tx(KEY, BOB, 1, 0, 0)] * (NETWORK.max_transactions + 1)
    ),
    "tx-fields": lambda p: mine(p, OTHER, [dict(sign_tx(KEY, BOB, 1, 0, 0), extra=1)]),
    "tx-self": lambda p: mine(p, OTHER, [sign_tx(KEY, ADDR, 1, 0, 0)]),
    "tx-signature": lambda p: mine(p, OTHER, [dict(sign_tx(KEY, BOB, 1, 0, 0), amount=2)]),
    "tx-nonce": lambda p: mine(p, OTHER, [sign_tx(KEY, BOB, 1, 0, 5)]),
    "tx-balance": lambda p: mine(p, OTHER, [sign_tx(KEY, BOB, 101, 0, 0)]),
    "tx-double-spend": lambda p: mine(
        p, OTHER, [sign_tx(KEY, BOB, 60, 0, 0), sign_tx(KEY, CAROL, 60, 0, 1)]
    ),
}


def test_every_rule_has_a_case() -> None:
    assert set(RULE_NUMBERS) - set(BREAKERS) == {
        "bad-parent",
        "network",
    }  # bad-parent below; network: the Blue Cheese


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_each_broken_rule_is_refused_with_its_number_and_changes_nothing(rule: str) -> None:
    funded = chain(2, miner=ADDR)
    manager = make_member("aa", new_clock(), funded)
    raw = ready_raw(manager, host="203.0.113.5")
    raw.replies()
    before = snapshot(manager)
    bad = BREAKERS[rule](funded[-1])
    [error] = raw.send({"type": "ANNOUNCE", "cheese": bad, "id": 1})
    assert (error["code"], error["id"]) == ("invalid-cheese", 1)
    assert f"rule {RULE_NUMBERS[rule]} ({rule})" in error["message"]
    assert same_chain(snapshot(manager), before)
    permanent = rule != "timestamp-future"
    assert raw.proto.score == (protocol_mod.ERROR_POINTS["invalid-cheese"] if permanent else 0)
    assert not raw.closed
    # A child of the broken cheese is refused too (bad-parent, or an orphan of a
    # cheese we never took).
    if permanent and bad.get("smell") in manager.node.stack.invalid:
        child = mine(bad, OTHER)
        [error] = raw.send({"type": "ANNOUNCE", "cheese": child})
        assert error["code"] == "invalid-cheese" and "(bad-parent)" in error["message"]
        assert same_chain(snapshot(manager), before)


DEEP_RULES = [
    "tx-signature",
    "tx-balance",
    "tx-double-spend",
    "timestamp",
    "bits",
    "sequence_number",
    "tx-nonce",
]


def branch_with_a_bad_cheese(rule: str, length: int = 30, bad_at: int = 20) -> List[dict]:
    """A branch from the Blue Cheese, cheese ``bad_at`` breaking ``rule`` (ADDR
    holds 100 before it)."""
    cheeses = chain(2, miner=ADDR)
    cheeses += chain(bad_at - 3, cheeses[-1], miner=OTHER)
    bad = BREAKERS[rule](cheeses[-1])
    return cheeses + [bad] + chain(length - bad_at, bad, miner=OTHER)


@pytest.mark.parametrize("rule", DEEP_RULES)
@pytest.mark.parametrize("delivery", ["announce", "sync"])
def test_a_longer_branch_hiding_an_invalid_cheese_leaves_the_best_valid_prefix(
    rule: str, delivery: str
) -> None:
    main = chain(5, miner=BOB)
    branch = branch_with_a_bad_cheese(rule)
    manager = make_member("aa", new_clock(), main)
    raw = Raw(manager, host="203.0.113.5")
    if delivery == "announce":
        raw.hello()
        for cheese in branch:
            raw.send({"type": "ANNOUNCE", "cheese": cheese})
    else:
        hello = raw.hello(height=30, tip=branch[-1]["smell"], work=str(2 * 31))
        [request] = [m for m in hello if m["type"] == "GET_CHEESES"]
        raw.send({"type": "CHEESES", "cheeses": branch, "id": request["id"]})
    stack = manager.node.stack
    prefix = branch[:19]
    assert stack.height == 19 and stack.tip.smell == prefix[-1]["smell"]
    reference = CheeseStack(NETWORK, clock=lambda: NOW)
    for cheese in prefix:
        reference.add_cheese(cheese)
    assert stack.ledger == reference.ledger
    assert not any(stack.is_best(c["smell"]) for c in branch[19:])
    assert raw.proto.score >= protocol_mod.ERROR_POINTS["invalid-cheese"]
    if delivery == "announce":  # the bad cheese and its descendants: banned after four
        assert manager.bans.is_banned("203.0.113.5") and raw.closed


@pytest.mark.parametrize("rule", ["tx-balance", "tx-signature", "bits"])
def test_a_branch_whose_valid_part_has_less_work_does_not_move_the_tip(rule: str) -> None:
    main = chain(25, miner=BOB)
    branch = branch_with_a_bad_cheese(rule)  # 30 long, valid only to 19
    manager = make_member("aa", new_clock(), main)
    before = snapshot(manager)
    raw = ready_raw(manager, host="127.0.0.1")  # loopback: closed, never banned
    for cheese in branch:
        raw.send({"type": "ANNOUNCE", "cheese": cheese})
    assert same_chain(snapshot(manager), before)
    assert not manager.bans.banned


def test_a_cheese_from_the_future_is_refused_now_and_accepted_later() -> None:
    clock = new_clock()
    funded = chain(2, miner=ADDR)
    manager = member_on(NETWORK, clock, funded)
    raw = ready_raw(manager, host="203.0.113.5")
    raw.replies()
    early = mine(funded[-1], OTHER, timestamp=int(clock.seconds()) + FUTURE_LIMIT + 30)
    for _ in range(6):  # refused again and again, never a penalty
        [error] = raw.send({"type": "ANNOUNCE", "cheese": early})
        assert "(timestamp-future)" in error["message"]
    assert (
        raw.proto.score == 0 and not raw.closed and early["smell"] not in manager.node.stack.invalid
    )
    clock.advance(31)
    assert raw.send({"type": "ANNOUNCE", "cheese": early}) == []
    assert manager.node.stack.tip.smell == early["smell"]


@pytest.mark.parametrize("delivery", ["announce", "sync"])
@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c["unit_of_information"]["transactions"].append(sign_tx(KEY, BOB, 1, 0, 0)),
        lambda c: c["unit_of_information"].__setitem__("miner", OTHER),
        lambda c: c["unit_of_information"].__setitem__("note", "tampered"),
        lambda c: c["unit_of_information"]["transactions"][0].__setitem__("amount", 2),
        lambda c: c["unit_of_information"]["transactions"].clear(),
    ],
    ids=["tx-added", "miner", "note", "amount", "txs-dropped"],
)
def test_a_tampered_body_under_a_valid_header_does_not_blacklist_the_real_cheese(
    delivery: str, tamper: Any
) -> None:
    funded = chain(2, miner=ADDR)
    good = mine(funded[-1], BOB, [sign_tx(KEY, CAROL, 1, 0, 0)])
    bad = json.loads(json.dumps(good))
    tamper(bad)
    manager = make_member("aa", new_clock(), funded)
    liar = Raw(manager, host="203.0.113.5")
    if delivery == "announce":
        liar.hello()
        [error] = liar.send({"type": "ANNOUNCE", "cheese": bad})
        assert error["code"] == "invalid-cheese" and "rule 5 (smell)" in error["message"]
    else:
        hello = liar.hello(height=3, tip=good["smell"], work="8")
        [request] = [m for m in hello if m["type"] == "GET_CHEESES"]
        liar.send({"type": "CHEESES", "cheeses": [bad], "id": request["id"]})
        assert liar.proto.score > 0
    stack = manager.node.stack
    assert stack.height == 2 and good["smell"] not in stack.invalid
    honest = Raw(manager, host="203.0.113.6")
    honest.hello(node_id="66")
    assert honest.send({"type": "ANNOUNCE", "cheese": good}) == []
    assert stack.tip.smell == good["smell"] and stack.ledger.balance(CAROL) == 1


def test_double_spends_across_reorganisations_leave_the_ledger_and_mempool_right() -> None:
    """A pays B on one branch and C with the same nonce on another; the member
    follows the branch with more work each time, and its ledger and mempool
    are those of a fresh stack fed only that branch."""
    clock = new_clock()
    common = chain(2, miner=ADDR)  # ADDR: 100
    pay_bob = sign_tx(KEY, BOB, 70, 1, 0)
    pay_carol = sign_tx(KEY, CAROL, 70, 2, 0)  # the same coins, the same nonce
    follow_up = sign_tx(KEY, BOB, 5, 1, 1)  # valid after either payment
    x = [mine(common[-1], OTHER, [pay_bob])]
    y = [mine(common[-1], OTHER, [pay_carol], timestamp=common[-1]["timestamp"] + 11)]
    y.append(mine(y[-1], OTHER))
    manager = member_on(NETWORK, clock, common)
    raw = ready_raw(manager, host="203.0.113.5")
    node = manager.node

    def check(best: List[dict], pending: List[dict]) -> None:
        reference = CheeseStack(NETWORK, clock=lambda: NOW)
        for cheese in common + best:
            reference.add_cheese(cheese)
        assert node.stack.tip.smell == best[-1]["smell"]
        assert node.stack.ledger == reference.ledger
        assert sorted(node.mempool.txs) == sorted(txid(t) for t in pending)
        for tx in pending:  # nothing in the mempool is confirmed
            assert node.stack.tx_height(txid(tx)) is None

    raw.send({"type": "ANNOUNCE", "cheese": x[0]})
    raw.send({"type": "TX", "tx": follow_up})
    raw.send({"type": "TX", "tx": pay_carol})  # a double spend of a confirmed payment: refused
    check(x, [follow_up])
    for cheese in y:  # more work: the payment to C wins, the one to B is gone for good
        assert raw.send({"type": "ANNOUNCE", "cheese": cheese}) == []
    check(y, [follow_up])
    assert node.stack.ledger.balance(BOB) == 0 and node.stack.ledger.balance(CAROL) == 70
    # Back again: x grows longer than y; the payment to C returns to... nowhere (nonce used).
    x.append(mine(x[-1], OTHER, [follow_up]))
    x.append(mine(x[-1], OTHER))
    for cheese in x[1:]:
        assert raw.send({"type": "ANNOUNCE", "cheese": cheese}) == []
    check(x, [])
    assert node.stack.ledger.balance(BOB) == 75 and node.stack.ledger.balance(CAROL) == 0
    # A cheese spending the same coins twice in one go, or re-spending on x, is refused.
    for txs in ([sign_tx(KEY, CAROL, 20, 0, 2), sign_tx(KEY, BOB, 20, 0, 3)], [pay_carol]):
        [error] = raw.send({"type": "ANNOUNCE", "cheese": mine(x[-1], OTHER, txs)})
        assert error["code"] == "invalid-cheese"
    check(x, [])


def test_bits_below_the_network_minimum_are_refused() -> None:
    from cheesecoin.core.errors import InvalidCheese

    network = make_network(name="hostile-minbits", bits=2, timestamp=NOW - 10**6)
    manager = member_on(network, new_clock())
    stack = manager.node.stack
    good = mine(network.blue_cheese, OTHER, bits=2)
    stack.add_cheese(good)
    with pytest.raises(InvalidCheese) as e:
        manager.node.submit_cheese(mine(good, OTHER, bits=1))
    assert e.value.rule == "bits" and stack.tip.smell == good["smell"]
