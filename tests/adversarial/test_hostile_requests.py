"""Hostile peers, round three (issue 26): requests that cost a real
``twistd cheesemember`` more than their reply, and gifts it should not give,
one test per finding. CPU is the member's own (``Member.cpu_seconds``), each
bound derived in the same run from an honest request; no wall-clock time is
asserted (a wall-clock cap only ends a loop that the old code made slow).

- 1: GET_TXS listing one confirmed txid 1,000 times, or naming the cheese
  that holds it, costs what a GET_TXS of as many unknown txids costs (before:
  ~2.5 s of CPU per request, the cheese reloaded and its txids recomputed for
  each copy).
- 7: GET_HEADERS costs per reply byte at most 20 times what GET_CHEESES
  does (here ~5 times; before: each header rebuilt from its stored body,
  ~55 times).
- 8: a HELLO without features that claims work gets nothing pushed; one that
  shows our tip gets our mempool once, not again on a reconnect (before: the
  whole mempool on every HELLO that claimed enough work).
- 9: a TXS reply full of bad signatures to the member's GET_TXS closes the
  connection, as the same transactions pushed as TX do (before: skipped
  silently, 1,000 signature checks a round for nothing).
"""

from __future__ import annotations

import json
import os
import time
from typing import List

import pytest
from rawpeer import ALL_FEATURES, Member, RawPeer, start_member

from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.testing.chain import key_from_seed, make_network, payment_stack

pytestmark = pytest.mark.slow

NET = make_network(
    "hostile-requests",
    bits=1,
    reward=1000,
    max_transactions=1000,
    timestamp=int(time.time()) - 10**6,
)
KEYS = [key_from_seed(f"requests-{i}") for i in range(50)]
WALL_CAP = 20.0  # seconds a measuring loop may run (the old code took seconds a request)


def big_stack() -> List[dict]:
    """Blue Cheese and 52 cheeses, the last two with 1,000 payments each."""
    return payment_stack(NET, 52, 1000, seed="requests")


def cpu_per_request(member: Member, peer: RawPeer, msg: dict, count: int) -> float:
    """The member's CPU seconds per request, over ``count`` requests (fewer if the
    wall-clock cap is reached first, which only the slow old code did)."""
    start_cpu, deadline = member.cpu_seconds(), time.monotonic() + WALL_CAP
    done = 0
    while done < count and time.monotonic() < deadline:
        peer.request(msg, timeout=60)
        done += 1
    return (member.cpu_seconds() - start_cpu) / done


def test_get_txs_costs_what_its_reply_costs(tmp_path, procs) -> None:
    """Finding 1: duplicates and a named cheese are not an amplifier."""
    cheeses = big_stack()
    member = start_member(tmp_path, procs, NET, cheeses)
    peer = RawPeer(member.port, NET, features=ALL_FEATURES, height=0, work=1)
    last = cheeses[-1]["unit_of_information"]["transactions"][-1]
    unknown = {"type": "GET_TXS", "txids": [f"{i:040x}" for i in range(1000)]}  # as big, none found
    honest = cpu_per_request(member, peer, unknown, 100)
    attack = cpu_per_request(member, peer, {"type": "GET_TXS", "txids": [txid(last)] * 1000}, 100)
    print(
        f"GET_TXS x1000 of one confirmed txid: {attack * 1000:.2f} ms CPU a request; "
        f"1,000 unknown txids: {honest * 1000:.2f} ms"
    )
    assert attack <= 3 * honest + 0.002, (attack, honest)
    reply = peer.request({"type": "GET_TXS", "txids": [txid(last)] * 1000}, timeout=60)
    assert reply["transactions"] == [last], "a duplicated txid is answered once"
    one_unknown = {"type": "GET_TXS", "txids": ["f" * 40]}
    honest = cpu_per_request(member, peer, one_unknown, 400)
    by_smell = {"type": "GET_TXS", "txids": [txid(last)], "smell": cheeses[-1]["smell"]}
    assert peer.request(by_smell)["transactions"] == [last]
    attack = cpu_per_request(member, peer, by_smell, 400)
    print(
        f"GET_TXS of one txid with its smell: {attack * 1e6:.0f} us CPU a request; "
        f"one unknown txid: {honest * 1e6:.0f} us"
    )
    assert attack <= 3 * honest + 0.0005, (attack, honest)
    peer.close()


def test_get_headers_costs_per_byte_about_what_get_cheeses_costs(tmp_path, procs) -> None:
    """Finding 7: headers served without reading bodies (~88 kB bodies here)."""
    cheeses = payment_stack(NET, 110, 260, seed="headers")
    member = start_member(tmp_path, procs, NET, cheeses)
    peer = RawPeer(member.port, NET, features=ALL_FEATURES, height=0, work=1)
    get_headers = {"type": "GET_HEADERS", "locator": [NET.smell], "count": 2000}
    get_cheeses = {"type": "GET_CHEESES", "from": 51, "count": 40}
    headers_bytes = len(json.dumps(peer.request(get_headers)))
    cheeses_bytes = len(json.dumps(peer.request(get_cheeses)))
    assert headers_bytes > 20_000 and cheeses_bytes > 3_000_000
    per_cheese_byte = cpu_per_request(member, peer, get_cheeses, 40) / cheeses_bytes
    per_header_byte = cpu_per_request(member, peer, get_headers, 1000) / headers_bytes
    print(
        f"CPU per reply byte: GET_HEADERS {per_header_byte * 1e9:.1f} ns, "
        f"GET_CHEESES {per_cheese_byte * 1e9:.1f} ns"
    )
    assert per_header_byte <= 20 * per_cheese_byte, (per_header_byte, per_cheese_byte)
    peer.close()


def tx_lines_before_pong(peer: RawPeer) -> int:
    """TX lines the member pushed before answering a PING sent now (a push
    starts when the handshake ends, before the PING is read)."""
    peer.send({"type": "PING", "id": 1})
    count = 0
    while True:
        msg = peer.read()
        assert msg is not None, "the member closed the connection"
        if msg.get("type") == "TX":
            count += 1
        elif msg.get("type") == "PONG":
            return count


def test_the_mempool_is_pushed_on_proven_work_once_per_host(tmp_path, procs) -> None:
    """Finding 8: a claim gets nothing; a reconnect does not get it again."""
    cheeses = big_stack()
    ledger = CheeseStack(NET, clock=lambda: 4e9)
    for c in cheeses[1:]:
        ledger.add_cheese(c, check_signatures=False)
    keys = KEYS
    pending = []
    for i, key in enumerate(keys[:20]):
        nonce = ledger.ledger.next_nonce(address_of(key))
        to = address_of(keys[i + 1])
        pending += [sign_tx(key, to, 1, 1, nonce + n, "x" * 140) for n in range(10)]
    data = os.path.join(str(tmp_path), "member", "data")
    os.makedirs(data)
    with open(os.path.join(data, "mempool.json"), "w", encoding="utf-8") as f:
        json.dump(pending, f)
    member = start_member(tmp_path, procs, NET, cheeses)
    assert member.status()["mempool"] == 200
    tip = cheeses[-1]["smell"]
    liar = RawPeer(member.port, NET, features=None, height=10**6, tip="ab" * 20, work=2**200)
    assert tx_lines_before_pong(liar) == 0, "the mempool was pushed on a claim"
    liar.close()
    synced = RawPeer(member.port, NET, features=None, height=52, tip=tip, work=2**200)
    assert tx_lines_before_pong(synced) == 200, "a peer that shows our tip gets our mempool"
    synced.close()
    for _ in range(3):
        again = RawPeer(member.port, NET, features=None, height=52, tip=tip, work=2**200)
        assert tx_lines_before_pong(again) == 0, "the mempool was pushed again on a reconnect"
        again.close()


def test_bad_signatures_in_a_txs_reply_cost_what_they_cost_as_tx(tmp_path, procs) -> None:
    """Finding 9: 1,000 bad signatures in the reply to the member's GET_TXS."""
    cheeses = big_stack()
    member = start_member(tmp_path, procs, NET, cheeses)
    key = key_from_seed("requests-3")
    ledger = CheeseStack(NET, clock=lambda: 4e9)
    for c in cheeses[1:]:
        ledger.add_cheese(c, check_signatures=False)
    nonce = ledger.ledger.next_nonce(address_of(key))
    bad = [
        dict(sign_tx(key, address_of(KEYS[0]), 1, 1, nonce, f"bad{i}"), signature="00" * 64)
        for i in range(1000)
    ]
    for way in ("TXS", "TX"):
        peer = RawPeer(member.port, NET, features=["mempool"], height=0, work=1)
        if way == "TXS":
            ask = peer.wait_for(lambda m: m.get("type") == "GET_MEMPOOL")
            peer.answer(ask, {"type": "MEMPOOL", "txids": [txid(tx) for tx in bad]})
            fetch = peer.wait_for(lambda m: m.get("type") == "GET_TXS")
            assert len(fetch["txids"]) == 1000
            peer.answer(fetch, {"type": "TXS", "transactions": bad})
        else:
            for tx in bad[:20]:
                peer.send({"type": "TX", "tx": tx})
        assert peer.closed_by_member(timeout=15), f"{way}: bad signatures kept the connection"
        peer.close()
    assert member.status()["mempool"] == 0
