"""Fuzzing the protocol objects with hypothesis: near-valid messages (valid
HELLO, ANNOUNCE, TX, GET_CHEESES, REGISTER, SUBMIT... with one or more
mutations: a field dropped, replaced, added or nudged, nested fields too)
and byte-level damage to their lines, against the member, the tracker and
the miner port on fake transports.

Whatever arrives: no exception escapes, no internal error is answered or
logged, every reply is one well-formed JSON message, and the stack and
mempool change only by the exact valid cheese or transaction (never by an
invalid one). ``CHEESECOIN_STORM_SCALE`` multiplies the number of examples.
"""

from __future__ import annotations

import copy
import json
from typing import Any, List

import pytest
from hostile import (
    ADDR,
    BOB,
    KEY,
    NETWORK,
    NOW,
    chain,
    make_member,
    mine,
    miner_endpoint,
    new_clock,
    ready_raw,
    storm_scale,
    tracker_endpoint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from cheesecoin.core.errors import ERROR_CODES
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import sign_tx, txid

EXAMPLES = 150 * storm_scale()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

FUNDED = chain(3, miner=ADDR)
TX = sign_tx(KEY, BOB, 7, 1, 0)
NEXT = mine(FUNDED[-1], BOB, [TX])
REPLY_TYPES = {
    "HELLO",
    "PONG",
    "STATS",
    "STATS_REPLY",
    "CHEESE",
    "CHEESES",
    "PEERS",
    "ERROR",
    "ANNOUNCE",
    "TX",
    "GET_CHEESES",
    "GET_PEERS",
    "PING",
    "OK",
    "WORK",
    "SUBMIT_REPLY",
}

MEMBER_MESSAGES = [
    {"type": "ANNOUNCE", "cheese": NEXT},
    {"type": "ANNOUNCE", "cheese": FUNDED[1]},
    {"type": "TX", "tx": TX},
    {"type": "GET_CHEESES", "locator": [FUNDED[1]["smell"], NETWORK.smell], "count": 3, "id": 1},
    {"type": "GET_CHEESES", "from": 1, "count": 2, "id": "a"},
    {"type": "GET_CHEESE", "sequence_number": 2, "id": 2},
    {"type": "GET_CHEESE", "smell": FUNDED[0]["smell"]},
    {"type": "STATS", "id": 3},
    {"type": "GET_PEERS"},
    {"type": "PING", "id": 4},
    {"type": "PEERS", "peers": [{"host": "10.9.9.9", "port": 24331}], "id": 1},
    {"type": "STATS_REPLY", "height": 9, "tip": "ab" * 20, "work": "20", "peers": 1, "id": 1},
    {"type": "CHEESES", "cheeses": [NEXT], "id": 2},
    {"type": "ERROR", "code": "busy", "message": "x", "id": 1},
    {
        "type": "HELLO",
        "version": 1,
        "network": NETWORK.smell,
        "node_id": "77",
        "port": 1,
        "height": 0,
        "tip": NETWORK.smell,
        "work": "2",
    },
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=20)
    | st.sampled_from(["", "0" * 40, NETWORK.smell, "ab" * 32, "HELLO", "\u0000", "\ud7ff"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple = ()) -> List[tuple]:
    """Every key path inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            out += _paths(v, prefix + (i,))
    return out


def _nudge(draw: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + draw(st.sampled_from([1, -1, 2**64, -(2**63), 2**63 - value]))
    if isinstance(value, str):
        if not value:
            return "x"
        i = draw(st.integers(0, len(value) - 1))
        how = draw(st.sampled_from(["flip", "cut", "upper", "grow"]))
        if how == "flip":
            return value[:i] + ("0" if value[i] != "0" else "1") + value[i + 1 :]
        if how == "cut":
            return value[:i]
        if how == "upper":
            return value.upper()
        return value + value[i]
    return draw(json_values)


@st.composite
def mutated(draw: Any, bases: List[dict]) -> dict:
    """A valid message with 0 to 3 mutations, anywhere in it."""
    msg = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(msg)
        path = draw(st.sampled_from(paths)) if paths else ("type",)
        parent = msg
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["drop", "replace", "nudge", "nudge", "add"]))
        if action == "drop" and isinstance(parent, dict):
            parent.pop(key, None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        elif action == "replace":
            parent[key] = draw(json_values)
        elif isinstance(parent, list) or key in parent:
            parent[key] = _nudge(draw, parent[key])
        else:
            parent[key] = draw(json_values)
    return msg


@st.composite
def damaged_line(draw: Any, msg: dict) -> bytes:
    """The message's line, sometimes with bytes flipped, cut or inserted."""
    line = json.dumps(msg, ensure_ascii=draw(st.booleans())).encode("utf-8")
    for _ in range(draw(st.integers(0, 2))):
        if not line:
            break
        i = draw(st.integers(0, len(line) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip":
            line = line[:i] + bytes([line[i] ^ draw(st.integers(1, 255))]) + line[i + 1 :]
        elif how == "cut":
            line = line[:i] + line[i + draw(st.integers(1, 8)) :]
        else:
            line = (
                line[:i]
                + draw(st.sampled_from([b"\n", b"\r", b"\xff", b"\x00", b'"', b"{", b"9" * 30]))
                + line[i:]
            )
    return line + b"\n"


@pytest.fixture
def logged_failures():
    failures: List[dict] = []

    def observer(event: dict) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    yield failures
    globalLogPublisher.removeObserver(observer)


def _check_replies(data: bytes) -> List[dict]:
    replies = []
    for line in data.split(b"\n"):
        if not line:
            continue
        reply = json.loads(line)
        assert isinstance(reply, dict) and reply.get("type") in REPLY_TYPES, reply
        if reply["type"] == "ERROR":
            assert reply["code"] in ERROR_CODES
            assert reply["message"] != "the message could not be handled", reply
        replies.append(reply)
    return replies


def _lines(bases: List[dict]) -> Any:
    return st.lists(mutated(bases).flatmap(damaged_line), min_size=1, max_size=8)


@FUZZ
@given(lines=_lines(MEMBER_MESSAGES), handshake=st.booleans())
def test_member_fuzz_changes_nothing_but_by_exact_valid_data(
    lines: List[bytes], handshake: bool, logged_failures
) -> None:
    clock = new_clock()
    manager = make_member("aa", clock, FUNDED)
    raw = ready_raw(manager, host="203.0.113.5") if handshake else None
    if raw is None:
        from hostile import Raw

        raw = Raw(manager, host="203.0.113.5")
    raw.replies()
    stack, mempool = manager.node.stack, manager.node.mempool
    sent: List[Any] = []
    for line in lines:
        raw.proto.dataReceived(line)
        _check_replies(raw.transport.value())
        raw.transport.clear()
        for part in line.split(b"\n"):
            try:
                sent.append(json.loads(part))
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
    clock.advance(100)
    manager.tick()
    # The stack may only move by the exact valid cheese: announced, or sent as
    # the reply to the member's own GET_CHEESES (a sync it started on a STATS_REPLY).
    exact_cheese = any(
        isinstance(m, dict)
        and (
            (m.get("type") == "ANNOUNCE" and m.get("cheese") == NEXT)
            or (
                m.get("type") == "CHEESES"
                and isinstance(m.get("cheeses"), list)
                and NEXT in m["cheeses"]
            )
        )
        for m in sent
    )
    exact_tx = any(
        isinstance(m, dict) and m.get("type") == "TX" and m.get("tx") == TX for m in sent
    )
    assert stack.tip.smell in (
        {FUNDED[-1]["smell"], NEXT["smell"]} if exact_cheese else {FUNDED[-1]["smell"]}
    )
    reference = CheeseStack(NETWORK, clock=lambda: NOW)
    for cheese in FUNDED + ([NEXT] if stack.tip.smell == NEXT["smell"] else []):
        reference.add_cheese(cheese)
    assert stack.ledger == reference.ledger
    assert len(stack.nodes) == len(reference.nodes)
    assert set(mempool.txs) <= ({txid(TX)} if exact_tx else set())
    assert not logged_failures, logged_failures[0]


TRACKER_MESSAGES = [
    {"type": "REGISTER", "port": 24331},
    {"type": "REGISTER", "port": 24331, "host": "member.example", "id": 1},
    {"type": "GET_PEERS", "id": "p"},
    {"type": "UNREGISTER"},
    {"type": "PING", "id": 2},
]


@FUZZ
@given(lines=_lines(TRACKER_MESSAGES))
def test_tracker_fuzz_keeps_only_valid_registrations(lines: List[bytes], logged_failures) -> None:
    ep = tracker_endpoint()
    factory = ep.proto.factory
    for line in lines:
        ep.proto.dataReceived(line)
        _check_replies(ep.transport.value())
        ep.transport.clear()
        for member in factory.registry.members():
            assert 1 <= member.port <= 65535 and member.host and " " not in member.host
    assert len(factory.registry) <= 1
    ep.proto.connectionLost(None)
    assert len(factory.registry) == 0 and factory.connection_count == 0 and not factory.per_ip
    assert not logged_failures, logged_failures[0]


@FUZZ
@given(data=st.data())
def test_miner_port_fuzz_only_a_real_proof_of_work_moves_the_tip(
    data: Any, logged_failures
) -> None:
    ep, factory = miner_endpoint()
    stack = factory.node.stack
    job = factory.current_job()
    bases = [
        {"type": "SUBMIT", "job": job.job_id, "nonce": 12345, "id": 1},
        {"type": "SUBMIT", "job": 1, "nonce": 0},
    ]
    accepted: List[str] = []
    for line in data.draw(_lines(bases)):
        ep.proto.dataReceived(line)
        for reply in _check_replies(ep.transport.value()):
            if reply["type"] == "SUBMIT_REPLY":
                assert reply["accepted"] is True
                accepted.append(reply["smell"])
        ep.transport.clear()
    assert stack.height == 2 + len(accepted)
    if accepted:
        assert stack.tip.smell == accepted[-1]
    factory.stopFactory()
    assert not logged_failures, logged_failures[0]
