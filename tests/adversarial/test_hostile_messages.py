"""Hostile messages against the member, tracker and miner-port protocols
(after Bitcoin Core's p2p_invalid_messages.py, p2p_timeouts.py and
p2p_unrequested_blocks.py). Fake transports and a task.Clock: no sockets.

Every case asserts the outcome: the reply and its code, whether the
connection is closed, whether the peer is banned, and that the member's
stack, ledger and mempool (or the tracker's registry) did not change.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, List

import pytest
from hostile import (
    ENDPOINTS,
    NETWORK,
    NOW,
    CountingBuffer,
    Raw,
    chain,
    make_member,
    miner_endpoint,
    new_clock,
    ready_raw,
    snapshot,
)

from cheesecoin.p2p import manager as manager_mod
from cheesecoin.p2p import protocol as protocol_mod
from cheesecoin.testing.chain import mine_child
from cheesecoin.wire.codec import MAX_LINE

ALL = sorted(ENDPOINTS)


def a_request(kind: str, i: int = 1) -> dict:
    """A harmless request each protocol answers (the miner port: a stale SUBMIT)."""
    if kind == "miner-port":
        return {"type": "SUBMIT", "job": 10**12 + i, "nonce": 0, "id": i}
    return {"type": "PING", "id": i}


def answer_type(kind: str) -> str:
    return "ERROR" if kind == "miner-port" else "PONG"


# -- framing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_a_message_split_into_single_bytes_is_one_message(kind: str) -> None:
    ep = ENDPOINTS[kind]()
    before = ep.state()
    line = json.dumps(a_request(kind, 7)).encode() + b"\r\n"
    replies: List[dict] = []
    for i in range(len(line)):
        replies += ep.feed(line[i : i + 1])
    assert [(r["type"], r["id"]) for r in replies] == [(answer_type(kind), 7)]
    assert not ep.closed and ep.state() == before


@pytest.mark.parametrize("kind", ALL)
def test_many_messages_in_one_write_are_answered_in_order(kind: str) -> None:
    ep = ENDPOINTS[kind]()
    before = ep.state()
    data = b"".join(json.dumps(a_request(kind, i)).encode() + b"\n" for i in range(300))
    replies = ep.feed(data + b'{"type":"PI')  # and the start of one more
    assert [r["id"] for r in replies] == list(range(300))
    assert {r["type"] for r in replies} == {answer_type(kind)}
    assert ep.feed(b'NG","id":"last"}\n' if kind != "miner-port" else b'"}\n')[0]["type"] in (
        "PONG",
        "ERROR",
    )
    assert not ep.closed and ep.state() == before


@pytest.mark.parametrize("kind", ALL)
def test_a_4_mib_plus_1_line_sent_slowly_costs_linear_work_and_closes(kind: str) -> None:
    ep = ENDPOINTS[kind]()
    before = ep.state()
    ep.proto._buffer = CountingBuffer()
    CountingBuffer.scanned = 0
    piece = b"x" * 1024
    total = MAX_LINE + 1
    sent = 0
    replies: List[dict] = []
    while sent < total and not ep.closed:
        chunk = piece[: min(len(piece), total - sent)]
        replies += ep.feed(chunk)
        sent += len(chunk)
        assert len(ep.proto._buffer) <= MAX_LINE + 1
    replies += ep.feed(b"\n")
    # Each byte is searched for the newline about once: linear, not quadratic.
    assert CountingBuffer.scanned <= 2 * total
    assert [r["code"] for r in replies] == ["too-long"]
    assert ep.closed and ep.state() == before
    assert ep.feed(json.dumps(a_request(kind)).encode() + b"\n") == []  # nothing more is read


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize(
    "line, code",
    [
        (b'{"type":"PING","id":1,"x":"\xff\xfe"}', "bad-json"),  # invalid UTF-8
        (b'{"type":"PING","id":1,"x":"\xed\xa0\x80"}', "bad-json"),  # an encoded surrogate
        (b'{"type":"PING","id":1,"x":"\\ud800"}', "bad-message"),  # a lone surrogate escape
        (b"[" * 100_000 + b"]" * 100_000, "bad-json"),  # deep nesting
        (b'{"type":"PING","id":1,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "bad-json"),
        (b'{"type":"PING","id":1,"x":' + b"9" * 100_000 + b"}", "bad-message"),  # a huge integer
        (b'{"type":"PING","id":1,"x":1e999}', "bad-message"),  # a float
        (b'{"type":"PING","id":1,"x":NaN}', "bad-message"),
        (b'{"type":"PING","id":1.5}', "bad-message"),  # an id that is no string or integer
        (b'{"type":"PING","id":[1]}', "bad-message"),
        (b"\x00\x01\x02", "bad-json"),
        (b"", "bad-json"),
        (b'"PING"', "bad-message"),
        (b'{"type":null}', "bad-message"),
        (b'{"type":"PING","type":5}', "bad-message"),  # a duplicate key: the last wins
    ],
)
def test_malformed_lines_get_one_error_and_change_nothing(
    kind: str, line: bytes, code: str
) -> None:
    ep = ENDPOINTS[kind]()
    before = ep.state()
    [error] = ep.send(line)
    assert error["type"] == "ERROR" and error["code"] == code
    assert not ep.closed and ep.state() == before
    assert ep.proto.errors == 1


def test_moderate_nesting_is_fine_and_huge_integers_in_fields_are_bad_message() -> None:
    ep = ENDPOINTS["member"]()
    assert ep.send(b'{"type":"PING","id":2,"x":' + b"[" * 500 + b"]" * 500 + b"}") == [
        {"type": "PONG", "id": 2}
    ]
    for value in (2**63, 2**64 + 1, -(2**63), 10**30):
        [error] = ep.send({"type": "GET_CHEESE", "sequence_number": value, "id": 3})
        assert (error["code"], error["id"]) == ("bad-message", 3)


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize(
    "msg_type",
    ["FROB", "hello", "Ping", "", "__init__", "_resolve", "X" * 5000, "PÏNG", "msg_PING"],
)
def test_unknown_types_get_unknown_type(kind: str, msg_type: str) -> None:
    ep = ENDPOINTS[kind]()
    before = ep.state()
    [error] = ep.send({"type": msg_type, "id": "u"})
    assert (error["code"], error["id"]) == ("unknown-type", "u")
    assert len(error["message"]) < 100  # the type is not echoed in full
    assert not ep.closed and ep.state() == before


@pytest.mark.parametrize("kind", ALL)
def test_ten_errors_close_the_connection(kind: str) -> None:
    ep = ENDPOINTS[kind]()
    before = ep.state()
    for i in range(9):
        assert ep.send(b"{nope")[0]["code"] == "bad-json"
        assert not ep.closed
    [last] = ep.send(b"{nope")  # the tenth is still answered, then the connection closes
    assert last["code"] == "bad-json" and ep.closed
    assert ep.send(json.dumps(a_request(kind)).encode()) == []
    assert ep.state() == before


def test_stale_submits_do_not_count_towards_the_ten_errors() -> None:
    ep, factory = miner_endpoint()
    for i in range(30):
        [error] = ep.send({"type": "SUBMIT", "job": 10**12 + i, "nonce": 1, "id": i})
        assert error["code"] == "stale"
    assert not ep.closed
    factory.stopFactory()


# -- wrong types in every field of every message ---------------------------------------------------

WRONG = [None, True, 1.5, "x", -1, 2**64, [], {}, [1], {"a": 1}, "0" * 40 + "0"]


def _valid_messages(cheeses: List[dict], new: dict, tx: dict) -> dict:
    return {
        "HELLO": {
            "type": "HELLO",
            "version": 1,
            "network": NETWORK.smell,
            "node_id": "77",
            "port": 5000,
            "height": 0,
            "tip": NETWORK.smell,
            "work": "2",
        },
        "GET_CHEESE_HEIGHT": {"type": "GET_CHEESE", "sequence_number": 1},
        "GET_CHEESE_SMELL": {"type": "GET_CHEESE", "smell": cheeses[0]["smell"]},
        "GET_CHEESES_FROM": {"type": "GET_CHEESES", "from": 1, "count": 2},
        "GET_CHEESES_LOCATOR": {
            "type": "GET_CHEESES",
            "locator": [cheeses[0]["smell"]],
            "count": 2,
        },
        "ANNOUNCE": {"type": "ANNOUNCE", "cheese": new},
        "TX": {"type": "TX", "tx": tx},
    }


def _member_field_cases() -> List[Any]:
    cases = []
    for name, fields in [
        ("HELLO", ["version", "network", "node_id", "port", "height", "tip", "work"]),
        ("GET_CHEESE_HEIGHT", ["sequence_number"]),
        ("GET_CHEESE_SMELL", ["smell"]),
        ("GET_CHEESES_FROM", ["from", "count"]),
        ("GET_CHEESES_LOCATOR", ["locator", "count"]),
        ("ANNOUNCE", ["cheese"]),
        ("TX", ["tx"]),
    ]:
        for field in fields:
            for i, value in enumerate(WRONG):
                if field in ("port", "count") and value is None:
                    continue  # allowed: a null port, a default count
                if (field in ("node_id", "work") and value == "0" * 41) or (
                    field == "locator" and value == []
                ):
                    continue  # valid: a long node id or work, an empty locator
                if field in ("cheese", "tx") and isinstance(value, dict):
                    continue  # an object: invalid-cheese / invalid-tx (the tests below)
                cases.append(pytest.param(name, field, value, id=f"{name}.{field}.{i}"))
    return cases


@pytest.mark.parametrize("name, field, value", _member_field_cases())
def test_member_wrong_type_in_every_field_is_bad_message(name: str, field: str, value: Any) -> None:
    from hostile import ADDR, BOB, KEY

    from cheesecoin.core.tx import sign_tx

    clock = new_clock()
    cheeses = chain(3, miner=ADDR)
    manager = make_member("aa", clock, cheeses[:2])
    raw = Raw(manager) if name == "HELLO" else ready_raw(manager)
    raw.replies()
    before = snapshot(manager)
    msg = dict(_valid_messages(cheeses, cheeses[2], sign_tx(KEY, BOB, 5, 1, 0))[name], id=11)
    msg[field] = value
    replies = raw.send(msg)
    errors = [r for r in replies if r["type"] == "ERROR"]
    assert [(e["code"], e["id"]) for e in errors] == [("bad-message", 11)], replies
    assert snapshot(manager) == before
    if name == "HELLO":
        assert not raw.proto.ready and not manager.peers
    assert manager.bans.is_banned("10.0.0.9") is False and not raw.closed


CHEESE_FIELDS = [
    "parent_smell",
    "sequence_number",
    "timestamp",
    "bits",
    "unit_of_information",
    "nonce",
    "smell",
]
TX_FIELDS = ["from", "to", "amount", "fee", "nonce", "memo", "signature"]


@pytest.mark.parametrize(
    "field",
    CHEESE_FIELDS
    + [
        "unit_of_information.miner",
        "unit_of_information.transactions",
        "unit_of_information.note",
        "extra",
    ],
)
@pytest.mark.parametrize(
    "value", [None, True, 1.5, "x", -1, 2**64, [], {}], ids=lambda v: type(v).__name__ + str(v)[:5]
)
def test_a_cheese_with_a_wrong_type_in_any_field_is_invalid_cheese(field: str, value: Any) -> None:
    clock = new_clock()
    cheeses = chain(2)
    manager = make_member("aa", clock, cheeses[:1])
    raw = ready_raw(manager, host="203.0.113.9")
    raw.replies()
    before = snapshot(manager)
    cheese = json.loads(json.dumps(cheeses[1]))
    if field == "unit_of_information.transactions" and value == []:
        value = [[]]
    if field.startswith("unit_of_information."):
        cheese["unit_of_information"][field.split(".")[1]] = value
    else:
        cheese[field] = value
    [error] = raw.send({"type": "ANNOUNCE", "cheese": cheese, "id": 5})
    # A float anywhere makes the message itself malformed (docs/protocol.md section 1).
    code = "bad-message" if isinstance(value, float) else "invalid-cheese"
    assert (error["type"], error["code"], error["id"]) == ("ERROR", code, 5)
    assert snapshot(manager) == before
    assert (
        cheeses[1]["smell"] not in manager.node.stack.invalid
    )  # the real cheese is not blacklisted
    assert raw.send({"type": "ANNOUNCE", "cheese": cheeses[1]}) == []
    assert manager.node.stack.tip.smell == cheeses[1]["smell"]


@pytest.mark.parametrize("field", TX_FIELDS + ["extra"])
@pytest.mark.parametrize(
    "value",
    [None, True, 1.5, "x", -1, 2**64, [], {}, "ab" * 32],
    ids=lambda v: type(v).__name__ + str(v)[:5],
)
def test_a_tx_with_a_wrong_value_in_any_field_is_invalid_tx(field: str, value: Any) -> None:
    from hostile import ADDR, BOB, KEY

    from cheesecoin.core.tx import sign_tx

    clock = new_clock()
    manager = make_member("aa", clock, chain(2, miner=ADDR))
    raw = ready_raw(manager)
    raw.replies()
    before = snapshot(manager)
    tx = dict(sign_tx(KEY, BOB, 5, 1, 0), **{field: value})
    [error] = raw.send({"type": "TX", "tx": tx, "id": 6})
    code = "bad-message" if isinstance(value, float) else "invalid-tx"
    assert (error["code"], error["id"]) == (code, 6)
    assert snapshot(manager) == before and not manager.node.mempool.txs


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "REGISTER"},
        {"type": "REGISTER", "port": 0},
        {"type": "REGISTER", "port": 65536},
        {"type": "REGISTER", "port": "24331"},
        {"type": "REGISTER", "port": 1.0},
        {"type": "REGISTER", "port": True},
        {"type": "REGISTER", "port": 24331, "host": ""},
        {"type": "REGISTER", "port": 24331, "host": "a b"},
        {"type": "REGISTER", "port": 24331, "host": "x" * 256},
        {"type": "REGISTER", "port": 24331, "host": 5},
        {"type": "REGISTER", "port": 24331, "host": ["h"]},
        {"type": "REGISTER", "port": 24331, "host": "h\u0000"},
    ],
)
def test_tracker_register_with_wrong_fields_is_bad_message_and_registers_nothing(msg: dict) -> None:
    ep = ENDPOINTS["tracker"]()
    [error] = ep.send(dict(msg, id=4))
    assert (error["code"], error["id"]) == ("bad-message", 4)
    assert ep.state() == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("job", None),
        ("job", 1.5),
        ("job", []),
        ("job", True),
        ("nonce", -1),
        ("nonce", 2**64),
        ("nonce", "1"),
        ("nonce", None),
        ("nonce", 1.0),
    ],
)
def test_miner_submit_with_wrong_fields_is_bad_message(field: str, value: Any) -> None:
    ep, factory = miner_endpoint()
    job = factory.current_job().job_id
    before = ep.state()
    [error] = ep.send(dict({"type": "SUBMIT", "job": job, "nonce": 0, "id": 8}, **{field: value}))
    assert (error["code"], error["id"]) == ("bad-message", 8)
    assert ep.state() == before
    factory.stopFactory()


# -- the handshake ---------------------------------------------------------------------------------


def test_a_second_hello_cannot_change_who_the_peer_is() -> None:
    manager = make_member("aa", new_clock(), chain(2))
    raw = ready_raw(manager, host="10.0.0.5")
    raw.replies()
    [error] = raw.hello(node_id="ee", height=10**6, work="9" * 70)
    assert error["code"] == "bad-message"
    assert list(manager.peers) == ["99"] and raw.proto.peer_node_id == "99"
    assert raw.proto.peer_work == 2 and raw.proto.download is None


def test_nothing_but_hello_and_error_is_accepted_before_the_handshake() -> None:
    manager = make_member("aa", new_clock(), chain(2))
    raw = Raw(manager)
    before = snapshot(manager)
    for msg in (
        {"type": "ANNOUNCE", "cheese": chain(3)[2]},
        {"type": "GET_CHEESES", "from": 0},
        {"type": "GET_PEERS"},
        {"type": "PEERS", "peers": [{"host": "10.9.9.9", "port": 1}]},
    ):
        [error] = raw.send(msg)
        assert error["code"] == "handshake-required"
    assert raw.send({"type": "ERROR", "code": "busy", "message": "x"}) == []  # never answered
    assert snapshot(manager) == before and not manager.addresses.known and not raw.closed


@pytest.mark.parametrize("behaviour", ["silent", "partial-line", "pings-only"])
def test_no_handshake_within_the_timeout_closes_the_connection(behaviour: str) -> None:
    clock = new_clock()
    manager = make_member("aa", clock)
    raw = Raw(manager, host="203.0.113.8")
    waited = 0.0
    while waited < manager_mod.HANDSHAKE_TIMEOUT - manager_mod.REFILL_INTERVAL:
        if behaviour == "partial-line":
            raw.proto.dataReceived(b'{"type":"HEL')  # a byte now and then, never a line
        elif behaviour == "pings-only":
            raw.send({"type": "PING"})
        clock.advance(manager_mod.REFILL_INTERVAL)
        waited += manager_mod.REFILL_INTERVAL
        manager.tick()
        assert not raw.transport.disconnected, f"closed after {waited} s"
    for _ in range(2):
        clock.advance(manager_mod.REFILL_INTERVAL)
        manager.tick()
    assert raw.transport.disconnected and not raw.proto.ready
    assert not manager.bans.is_banned("203.0.113.8")  # slow is not misbehaving


def test_the_tracker_drops_a_connection_silent_past_its_timeout() -> None:
    ep = ENDPOINTS["tracker"]()
    factory = ep.proto.factory
    factory.clock.advance(factory.timeout - 1)
    factory.sweep()
    assert not ep.transport.disconnecting
    factory.clock.advance(2)
    factory.sweep()
    assert ep.transport.disconnecting


# -- GET_CHEESES abuse -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg, code",
    [
        ({"from": 0, "count": 0}, "bad-message"),
        ({"from": 0, "count": 501}, "bad-message"),
        ({"from": 0, "count": 10**40}, "bad-message"),
        ({"from": 0, "count": -5}, "bad-message"),
        ({"from": -1}, "bad-message"),
        ({"from": -(2**63)}, "bad-message"),
        ({"from": 2**63}, "bad-message"),
        ({"locator": ["0" * 40] * 1001}, "bad-message"),
        ({"locator": ["0" * 39]}, "bad-message"),
        ({"locator": {"a": 1}}, "bad-message"),
        ({"locator": "0" * 40}, "bad-message"),
        ({"locator": [["0" * 40]]}, "bad-message"),
        ({}, "bad-message"),
    ],
)
def test_get_cheeses_abuse_is_refused(msg: dict, code: str) -> None:
    ep = ENDPOINTS["member"]()
    before = ep.state()
    [error] = ep.send(dict(msg, type="GET_CHEESES", id=3))
    assert (error["code"], error["id"]) == (code, 3)
    assert ep.state() == before and not ep.closed


def test_get_cheeses_edge_requests_get_bounded_replies() -> None:
    cheeses = chain(30)
    manager = make_member("aa", new_clock(), cheeses)
    raw = ready_raw(manager)
    raw.replies()
    [far] = raw.send({"type": "GET_CHEESES", "from": 2**63 - 1, "count": 500})
    assert far["cheeses"] == []
    unknown = [secrets.token_hex(20) for _ in range(1000)]
    [reply] = raw.send({"type": "GET_CHEESES", "locator": unknown, "count": 500})
    assert reply["cheeses"] == cheeses  # none on our stack: after the Blue Cheese
    [tip] = raw.send({"type": "GET_CHEESES", "locator": unknown[:999] + [cheeses[-1]["smell"]]})
    assert tip["cheeses"] == []
    # A hundred full requests in one write: a hundred bounded replies, nothing else.
    replies = raw.send(
        *[{"type": "GET_CHEESES", "from": 0, "count": 500, "id": i} for i in range(100)]
    )
    assert [r["id"] for r in replies] == list(range(100)) and all(
        len(r["cheeses"]) == 31 for r in replies
    )
    assert not raw.closed and raw.proto.score == 0


# -- floods ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host, banned", [("203.0.113.5", True), ("127.0.0.1", False)])
def test_a_flood_of_junk_announces_is_cut_short(host: str, banned: bool) -> None:
    cheeses = chain(3)
    manager = make_member("aa", new_clock(), cheeses)
    raw = ready_raw(manager, host=host)
    raw.replies()
    before = snapshot(manager)
    junk = [dict(cheeses[1], nonce=i, smell=secrets.token_hex(20)) for i in range(1000)]
    replies = raw.send(*[{"type": "ANNOUNCE", "cheese": c} for c in junk])
    assert 1 <= len(replies) <= 10 and {r["code"] for r in replies} == {"invalid-cheese"}
    assert raw.closed and manager.bans.is_banned(host) is banned
    assert snapshot(manager) == before
    other = Raw(manager, host="203.0.113.77")  # others are still served
    assert other.hello(node_id="55")[0]["type"] == "HELLO"


def test_valid_unrequested_side_branch_cheeses_are_kept_but_change_nothing() -> None:
    clock = new_clock()
    main = chain(40)
    manager = make_member("aa", clock, main)
    flooder = ready_raw(manager, host="203.0.113.5")
    watcher = Raw(manager, host="203.0.113.6")
    watcher.hello(node_id="66")
    flooder.replies(), watcher.replies()
    before = snapshot(manager)
    side = chain(30, main[4], miner="cd" * 32)  # less work than the best stack
    for cheese in side:
        assert flooder.send({"type": "ANNOUNCE", "cheese": cheese}) == []
    after = snapshot(manager)
    assert (after.tip, after.height, after.balances) == (before.tip, before.height, before.balances)
    assert after.nodes == before.nodes + 30
    assert watcher.replies() == []  # side cheeses are not relayed
    assert flooder.proto.score == 0 and not flooder.closed  # valid work is not misbehaviour


def test_a_thousand_orphans_stay_within_the_bounded_pool() -> None:
    clock = new_clock()
    cheeses = chain(3)
    manager = make_member("aa", clock, cheeses)
    raw = ready_raw(manager, host="203.0.113.5")
    raw.replies()
    before = snapshot(manager)
    stack = manager.node.stack
    replies = []
    for i in range(1000):
        parent = {"smell": secrets.token_hex(20), "sequence_number": 10 + i, "timestamp": NOW - 100}
        orphan = mine_child(parent, NETWORK.bits, "cd" * 32)
        replies += raw.send({"type": "ANNOUNCE", "cheese": orphan})
        assert len(stack.orphans) <= stack.orphans.max_count
    assert len(stack.orphans) == stack.orphans.max_count == 256
    assert not [m for m in replies if m["type"] == "ERROR"]
    asked = [m for m in replies if m["type"] == "GET_CHEESES"]
    # One download at a time, not a thousand (the other pending request: the handshake's STATS).
    assert len(asked) == 1 and len(raw.proto.pending) == 2
    assert snapshot(manager) == before
    clock.advance(
        protocol_mod.REQUEST_TIMEOUT + 1
    )  # the announcer never answers: the download ends
    assert raw.proto.download is None and not raw.proto.pending
    assert snapshot(manager) == before


def test_a_peer_feeding_known_cheeses_in_circles_cannot_hold_the_sync() -> None:
    """Regression: a peer claiming more work answered each GET_CHEESES with
    cheeses we already have, never the same last one twice (A, B, A, B...): the
    download never ended, and as only one runs at a time, no honest peer could
    be synced from. Now a chunk must be one chain that continues the last one."""
    clock = new_clock()
    cheeses = chain(12)
    manager = make_member("aa", clock, cheeses[:8])
    liar = Raw(manager, host="203.0.113.5")
    asked = [
        m
        for m in liar.hello(node_id="55", height=10**6, tip="ab" * 20, work="9" * 70)
        if m["type"] == "GET_CHEESES"
    ]
    chunks = [cheeses[:4], cheeses[:3], [cheeses[5], cheeses[2]]]
    for round_ in range(30):
        if not asked:
            break
        reply = liar.send({"type": "CHEESES", "cheeses": chunks[round_ % 2], "id": asked[0]["id"]})
        asked = [m for m in reply if m["type"] == "GET_CHEESES"]
    assert liar.proto.download is None, "the circling download is still running"
    honest = Raw(manager, host="198.51.100.7")
    hello = honest.hello(node_id="66", height=12, tip=cheeses[-1]["smell"], work=str(2 * 13))
    [request] = [m for m in hello if m["type"] == "GET_CHEESES"]
    honest.send({"type": "CHEESES", "cheeses": cheeses[8:], "id": request["id"]})
    assert manager.node.stack.tip.smell == cheeses[-1]["smell"]
    # A chunk that is not one chain is malformed.
    liar2 = Raw(manager, host="203.0.113.6")
    [ask] = [
        m
        for m in liar2.hello(node_id="77", height=10**6, tip="cd" * 20, work="9" * 70)
        if m["type"] == "GET_CHEESES"
    ]
    liar2.send({"type": "CHEESES", "cheeses": chunks[2], "id": ask["id"]})
    assert liar2.proto.download is None and liar2.proto.score >= 50
