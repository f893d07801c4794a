"""The worked examples of tests/vectors/, reproduced exactly."""

from __future__ import annotations

import copy

import pytest
from procs import VECTORS, vector

from cheesecoin.core.cheese import (
    DEFAULT_NETWORK_FILE,
    HEADER_FIELDS,
    canonical,
    check_smell,
    compact_announcement,
    compute_smell,
    header_of,
    info_hash,
    load_network,
    meets_pow,
    network_from_blue_cheese,
    preimage,
    rebuild_cheese,
)
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, signing_bytes, txid, verify_signature
from cheesecoin.testing.chain import key_from_seed

CHAIN = vector("chain-vectors.json")
INVALID = vector("invalid-cheeses.json")
RETARGET = vector("retarget-vectors.json")
NOW = 1795300100  # a clock after every vector timestamp


def chain_stack() -> CheeseStack:
    stack = CheeseStack(network_from_blue_cheese(CHAIN["cheeses"][0]), clock=lambda: NOW)
    for cheese in CHAIN["cheeses"][1:]:
        assert stack.add_cheese(copy.deepcopy(cheese)).status == "added"
    return stack


def test_info_hashes_preimages_and_smells():
    for cheese, ihash, pre in zip(CHAIN["cheeses"], CHAIN["info_hashes"], CHAIN["preimages"]):
        assert info_hash(cheese["unit_of_information"]) == ihash
        assert preimage(cheese) == pre
        assert compute_smell(cheese) == cheese["smell"]
        assert meets_pow(cheese["smell"], cheese["bits"])
        check_smell(cheese)


def test_txids_and_signatures():
    txs = [tx for c in CHAIN["cheeses"][1:] for tx in c["unit_of_information"]["transactions"]]
    assert [txid(tx) for tx in txs] == [CHAIN["txids"][k] for k in ("t1", "t2", "t3")]
    assert all(verify_signature(tx) for tx in txs)
    keys = {name: key_from_seed(k["seed"]) for name, k in CHAIN["keys"].items()}
    for name, info in CHAIN["keys"].items():
        assert address_of(keys[name]) == info["address"]
        assert keys[name].private_bytes_raw().hex() == info["private_key"]
    by_address = {CHAIN["keys"][n]["address"]: keys[n] for n in keys}
    for tx in txs:
        again = sign_tx(
            by_address[tx["from"]], tx["to"], tx["amount"], tx["fee"], tx["nonce"], tx["memo"]
        )
        assert again == tx  # Ed25519 is deterministic


def test_signing_bytes_are_canonical_without_signature():
    tx = CHAIN["cheeses"][2]["unit_of_information"]["transactions"][0]
    body = {k: v for k, v in tx.items() if k != "signature"}
    assert signing_bytes(tx) == canonical(body)


def test_balances_and_nonces():
    stack = chain_stack()
    assert stack.height == 3
    assert stack.tip.smell == CHAIN["cheeses"][-1]["smell"]
    assert stack.ledger.balances == CHAIN["balances"]
    assert stack.ledger.nonces == CHAIN["next_nonces"]
    assert stack.work == 4 * 2**8


@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["rule"] for c in INVALID["cases"]])
def test_invalid_cheeses_refused_for_their_rule(case):
    stack = chain_stack()
    before = (stack.tip.smell, dict(stack.ledger.balances), dict(stack.ledger.nonces))
    with pytest.raises(InvalidCheese) as info:
        stack.add_cheese(copy.deepcopy(case["cheese"]))
    assert info.value.rule == case["rule"]
    assert (stack.tip.smell, stack.ledger.balances, stack.ledger.nonces) == before


def test_retarget_bits():
    stack = CheeseStack(
        network_from_blue_cheese(RETARGET["cheeses"][0]), clock=lambda: NOW + 10_000
    )
    bits = [RETARGET["cheeses"][0]["bits"]]
    for cheese in RETARGET["cheeses"][1:]:
        bits.append(stack.next_bits(stack.tip))
        stack.add_cheese(copy.deepcopy(cheese))
    assert bits == RETARGET["bits"]
    assert stack.height == len(RETARGET["cheeses"]) - 1
    assert stack.work == sum(2**b for b in RETARGET["bits"])


def test_network_files():
    net = load_network()
    assert net.smell == vector("blue-cheese-cheesecoin.json")["smell"]
    assert (
        net.name,
        net.target_spacing,
        net.retarget_interval,
        net.reward,
        net.max_transactions,
    ) == ("cheesecoin", 10, 20, 50, 1000)
    assert (
        open(DEFAULT_NETWORK_FILE, "rb").read()
        == open(f"{VECTORS}/blue-cheese-cheesecoin.json", "rb").read()
    )
    vec = load_network(f"{VECTORS}/network-vectors.json")
    assert vec.smell == CHAIN["cheeses"][0]["smell"]


# -- compact-vectors.json: headers and compact announcements (docs/protocol.md 5.1) ----------

COMPACT = vector("compact-vectors.json")


def test_headers_of_the_chain_cheeses():
    assert len(COMPACT["headers"]) == len(CHAIN["cheeses"])
    for cheese, header in zip(CHAIN["cheeses"], COMPACT["headers"]):
        assert header_of(cheese) == header
        assert list(header) == list(HEADER_FIELDS)
        # A header's smell and proof of work check without the body.
        assert compute_smell(header, header["info_hash"]) == header["smell"]
        assert meets_pow(header["smell"], header["bits"])


def test_compact_announcements_of_the_chain_cheeses():
    announced = COMPACT["announce_compact"]
    assert [m["header"]["sequence_number"] for m in announced] == [1, 2, 3]
    for msg in announced:
        cheese = CHAIN["cheeses"][msg["header"]["sequence_number"]]
        assert compact_announcement(cheese) == msg


def test_rebuilding_each_cheese_from_its_compact_announcement():
    by_txid = {
        txid(tx): tx
        for c in CHAIN["cheeses"][1:]
        for tx in c["unit_of_information"]["transactions"]
    }
    for msg in COMPACT["announce_compact"]:
        txs = [copy.deepcopy(by_txid[t]) for t in msg["txids"]]
        rebuilt = rebuild_cheese(msg["header"], msg["miner"], txs, msg.get("note"))
        assert rebuilt == CHAIN["cheeses"][msg["header"]["sequence_number"]]
        assert check_smell(rebuilt) == msg["header"]["info_hash"]


def test_a_rebuilt_body_that_differs_does_not_match_its_header():
    msg = COMPACT["announce_compact"][1]  # cheese 2, one payment, a note
    rebuilt = rebuild_cheese(
        msg["header"], msg["miner"], [], msg.get("note")
    )  # the payment left out
    assert info_hash(rebuilt["unit_of_information"]) != msg["header"]["info_hash"]
    with pytest.raises(InvalidCheese):
        check_smell(rebuilt)
