"""Property tests (hypothesis): canonical JSON and ledger apply/rollback."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cheesecoin.core.cheese import canonical, info_canonical
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.ledger import Ledger
from cheesecoin.core.tx import address_of, sign_tx, signing_bytes, tx_canonical_text
from cheesecoin.testing.chain import key_from_seed

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(json_values)
def test_canonical_is_sorted_compact_utf8_and_round_trips(value):
    data = canonical(value)
    assert json.loads(data.decode("utf-8")) == value
    assert canonical(json.loads(data)) == data
    assert b", " not in data.replace(b'", "', b"") or isinstance(value, str)


@given(st.dictionaries(st.text(max_size=6), json_scalars, max_size=6))
def test_canonical_ignores_key_order(d):
    reordered = dict(reversed(list(d.items())))
    assert canonical(d) == canonical(reordered)


tx_like = st.fixed_dictionaries(
    {
        "from": hex64,
        "to": hex64,
        "amount": st.integers(0, 2**63),
        "fee": st.integers(0, 2**63),
        "nonce": st.integers(0, 2**63),
        "memo": st.text(max_size=140),
        "signature": st.text("0123456789abcdef", min_size=128, max_size=128),
    }
)


@given(tx_like | st.dictionaries(st.text(max_size=8), json_values, max_size=7))
def test_fast_tx_canonical_equals_canonical(tx):
    assert tx_canonical_text(tx).encode("utf-8") == canonical(tx)
    if isinstance(tx, dict) and "signature" in tx:
        body = {k: v for k, v in tx.items() if k != "signature"}
        assert signing_bytes(tx) == canonical(body)


@given(hex64, st.lists(tx_like, max_size=4), st.one_of(st.none(), st.text(max_size=30)))
def test_fast_info_canonical_equals_canonical(miner, txs, note):
    info = {"miner": miner, "transactions": txs}
    if note is not None:
        info["note"] = note
    assert info_canonical(info) == canonical(info)


KEYS = [key_from_seed(f"prop-{i}") for i in range(4)]
ADDRS = [address_of(k) for k in KEYS]
REWARD = 50


@st.composite
def valid_sequences(draw):
    """A sequence of member cheeses' infos that is valid from an empty ledger."""
    ledger = Ledger()
    infos = []
    for _ in range(draw(st.integers(1, 8))):
        txs = []
        shadow = ledger.copy()
        for _ in range(draw(st.integers(0, 4))):
            i = draw(st.integers(0, 3))
            j = draw(st.integers(0, 3).filter(lambda j: j != i))
            have = shadow.balance(ADDRS[i])
            if have < 1:
                continue
            amount = draw(st.integers(1, have))
            fee = draw(st.integers(0, have - amount))
            tx = sign_tx(KEYS[i], ADDRS[j], amount, fee, shadow.next_nonce(ADDRS[i]))
            shadow.apply_cheese(
                {"miner": "00" * 32, "transactions": [tx]}, 0, check_signatures=False
            )
            txs.append(tx)
        info = {"miner": ADDRS[draw(st.integers(0, 3))], "transactions": txs}
        ledger.apply_cheese(info, REWARD)
        infos.append(info)
    return infos


@settings(max_examples=60, deadline=None)
@given(valid_sequences(), st.data())
def test_apply_then_rollback_returns_to_the_same_ledger(infos, data):
    ledger = Ledger()
    snapshots = [ledger.copy()]
    for info in infos:
        ledger.apply_cheese(info, REWARD)
        snapshots.append(ledger.copy())
    total = sum(ledger.balances.values())
    assert total == REWARD * len(infos)  # coins come only from rewards
    depth = data.draw(st.integers(0, len(infos)))
    for k in range(depth):
        ledger.rollback_cheese(infos[len(infos) - 1 - k], REWARD)
        assert ledger == snapshots[len(infos) - 1 - k]
    assert all(v > 0 for v in ledger.balances.values())


@settings(max_examples=40, deadline=None)
@given(valid_sequences(), st.integers(0, 3), st.integers(1, 10**6))
def test_an_invalid_cheese_changes_nothing(infos, who, amount):
    ledger = Ledger()
    for info in infos:
        ledger.apply_cheese(info, REWARD)
    before = ledger.copy()
    sender = ADDRS[who]
    ok = (
        sign_tx(KEYS[who], ADDRS[(who + 1) % 4], 1, 0, ledger.next_nonce(sender))
        if ledger.balance(sender)
        else None
    )
    overspend = sign_tx(
        KEYS[who],
        ADDRS[(who + 2) % 4],
        ledger.balance(sender) + amount,
        0,
        ledger.next_nonce(sender) + (1 if ok else 0),
    )
    txs = ([ok] if ok else []) + [overspend]
    try:
        ledger.apply_cheese({"miner": ADDRS[0], "transactions": txs}, REWARD)
        raise AssertionError("an overspend was accepted")
    except InvalidCheese as e:
        assert e.rule in ("tx-balance", "tx-double-spend")
    assert ledger == before


@settings(max_examples=150, deadline=None)
@given(
    note=st.lists(
        st.sampled_from(['"unit_of_information":', '"', "\\", "}", "{", ",", "a", "é", "\n"]),
        max_size=12,
    ).map("".join),
    memo=st.text(max_size=12),
    spaced=st.booleans(),
)
def test_a_header_from_a_stored_text_is_the_header_of_its_cheese(note, memo, spaced):
    """header_from_text slices the body out of a canonical text; any text
    (other key order, spaces) still gives the cheese's header, the long way."""
    from cheesecoin.core.cheese import header_from_text, header_of
    from cheesecoin.testing.chain import make_network, mine_child

    network = make_network("headertext", bits=1, timestamp=1_000_000)
    key = key_from_seed("header-text")
    tx = sign_tx(key, "ab" * 32, 1, 1, 0, memo)
    cheese = mine_child(network.blue_cheese, 1, address_of(key), [tx], note=note or None)
    text = canonical(cheese).decode("utf-8")
    if spaced:
        text = json.dumps(dict(reversed(list(cheese.items()))), ensure_ascii=False, indent=1)
    assert header_from_text(text) == header_of(cheese)


def test_a_stored_text_whose_body_is_not_canonical_is_hashed_the_long_way():
    """A body spelled otherwise (here: a space) has another SHA1: the smell
    check catches it and the header still carries the real info_hash."""
    from cheesecoin.core.cheese import header_from_text, header_of
    from cheesecoin.testing.chain import make_network, mine_child

    network = make_network("headertext", bits=1, timestamp=1_000_000)
    cheese = mine_child(network.blue_cheese, 1, "cd" * 32, [])
    text = canonical(cheese).decode("utf-8").replace('"transactions":[]', '"transactions": []')
    assert header_from_text(text) == header_of(cheese)
