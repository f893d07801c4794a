"""docs/protocol.md stays true: its examples are checked against the code.

- every fenced ``json`` block without a check comment holds protocol
  messages (one per line, or one for the whole block) that
  ``cheesecoin.wire.parse_message`` accepts; cheeses and transactions inside
  them have right smells and signatures; WORK / SUBMIT / SUBMIT_REPLY agree;
- a block after ``<!-- check: KIND ... -->`` is checked as KIND: ``cheese``,
  ``tx``, the texts derived from the cheese or transaction above it
  (``canonical info``, ``info hash``, ``preimage``, ``smell``,
  ``signing text``, ``txid``), or ``http METHOD PATH STATUS [BODY]``: the
  request, made to the real HTTP API of a member holding the vectors stack,
  must give exactly that answer (in document order; a POST without BODY
  sends the transaction above it);
- every message type the member, tracker, tracker link, miner port and
  external miner handle (their ``msg_XXX`` methods) has an example, and no
  example uses a type nobody handles; every error code is named;
- every number in the limits table equals the constant or default named
  beside it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
from typing import Any, List, NamedTuple, Optional

import pytest
from doccheck import check_limits_table
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from cheesecoin.core import pow as pow_mod
from cheesecoin.core.cheese import (
    canonical,
    check_header_format,
    check_member_info,
    check_smell,
    compute_smell,
    info_hash,
    meets_pow,
    network_from_blue_cheese,
    preimage,
    preimage_prefix,
)
from cheesecoin.core.errors import ERROR_CODES
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import check_tx_format, signing_bytes, txid, verify_signature
from cheesecoin.web import api
from cheesecoin.wire import codec as wire

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DOC = os.path.join(ROOT, "docs", "protocol.md")
# Modules whose protocols dispatch on msg_<TYPE> methods.
MESSAGE_MODULES = ["p2p.states", "tracker.server", "mining.port", "p2p.tracker_link", "cli.mine"]
_FENCE = re.compile(r"^```(\w*)\s*$")
_CHECK = re.compile(r"^<!--\s*check:\s*(.*?)\s*-->$")


class Block(NamedTuple):
    lang: str
    text: str
    check: Optional[str]
    line: int  # where the block's first line is, for messages


def read_doc() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def doc_blocks() -> List[Block]:
    """The fenced blocks of the doc, with the check comment just above each."""
    out: List[Block] = []
    lines = read_doc().split("\n")
    i = 0
    last_text = ""
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                last_text = lines[i].strip()
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"docs/protocol.md:{i + 1}: a fenced block is never closed"
        check = _CHECK.match(last_text)
        out.append(
            Block(
                opening.group(1),
                "\n".join(lines[start:end]),
                check.group(1) if check else None,
                start + 1,
            )
        )
        last_text = ""
        i = end + 1
    return out


def message_blocks() -> List[Block]:
    return [b for b in doc_blocks() if b.lang == "json" and b.check is None]


def doc_messages() -> List[dict]:
    """Every example message, parsed by the protocol's own parser."""
    messages = []
    for block in message_blocks():
        lines = [line for line in block.text.split("\n") if line.strip()]
        if len(lines) > 1 and not all(
            line.lstrip().startswith("{") and line.rstrip().endswith("}") for line in lines
        ):
            lines = [" ".join(lines)]  # one message spread over the block
        for n, line in enumerate(lines):
            try:
                msg = wire.parse_message(line.encode("utf-8"))
            except wire.ProtocolError as e:
                pytest.fail(
                    f"docs/protocol.md:{block.line + n}: not a valid message "
                    f"({e.code}: {e.message}): {line[:120]}"
                )
            messages.append(msg)
    return messages


def handled_types() -> set:
    types = set()
    for name in MESSAGE_MODULES:
        module = importlib.import_module(f"cheesecoin.{name}")
        types.update(re.findall(r"def msg_([A-Z_]+)\(", inspect.getsource(module)))
        for _, cls in inspect.getmembers(module, inspect.isclass):  # the replies a state resolves
            types.update(getattr(cls, "replies", ()))
    return types


# -- the message examples -------------------------------------------------------------


def test_the_doc_has_examples_of_every_kind() -> None:
    blocks = doc_blocks()
    kinds = [b.check.split()[0] if b.check else b.lang for b in blocks]
    assert kinds.count("json") >= 10
    assert kinds.count("cheese") >= 2 and kinds.count("tx") >= 2 and kinds.count("http") >= 8
    for kind in ("canonical", "info", "preimage", "smell", "signing", "txid"):
        assert kind in kinds, kind
    for block in blocks:
        assert block.check is None or block.lang in ("json", "text"), (
            f"line {block.line}: a check on a {block.lang} block"
        )


def test_every_json_block_is_messages_the_parser_accepts() -> None:
    messages = doc_messages()
    assert len(messages) >= 30
    for msg in messages:
        assert msg["type"].isupper(), msg["type"]
        if msg["type"] == "ERROR":
            assert msg["code"] in ERROR_CODES and isinstance(msg["message"], str), msg


def test_every_handled_message_type_has_an_example() -> None:
    handled = handled_types()
    assert {"HELLO", "ANNOUNCE", "REGISTER", "SUBMIT", "WORK", "OK"} <= handled  # the scan works
    documented = {msg["type"] for msg in doc_messages()}
    assert handled - documented == set(), "message types with no example in docs/protocol.md"
    assert documented - handled == set(), "examples of message types that no code handles"


def test_every_error_code_is_named() -> None:
    text = read_doc()
    missing = [code for code in sorted(ERROR_CODES) if f"`{code}`" not in text]
    assert missing == [], f"error codes not in docs/protocol.md: {missing}"


def test_cheeses_and_transactions_inside_messages_are_valid() -> None:
    seen = 0
    for msg in doc_messages():
        cheeses = list(msg.get("cheeses", []))
        if isinstance(msg.get("cheese"), dict) and "smell" in msg["cheese"]:
            cheeses.append(msg["cheese"])
        for cheese in cheeses:
            check_header_format(cheese)
            check_smell(cheese)
            seen += 1
        if "tx" in msg:
            assert check_tx_format(msg["tx"]) is None and verify_signature(msg["tx"]), msg
            seen += 1
    assert seen >= 4


def test_work_submit_and_reply_agree() -> None:
    messages = doc_messages()
    works = {m["job"]: m for m in messages if m["type"] == "WORK"}
    assert works
    for work in works.values():
        cheese = work["cheese"]
        assert set(cheese) == {
            "parent_smell",
            "sequence_number",
            "timestamp",
            "bits",
            "unit_of_information",
        }
        assert work["bits"] == cheese["bits"]
        expected = preimage_prefix(
            cheese["parent_smell"], cheese["sequence_number"], cheese["timestamp"], cheese["bits"],
            info_hash(cheese["unit_of_information"]),
        )  # fmt: skip
        assert work["prefix"] == expected
    replies = {m["id"]: m for m in messages if m["type"] == "SUBMIT_REPLY"}
    accepted = 0
    for submit in (m for m in messages if m["type"] == "SUBMIT" and m["job"] in works):
        reply = replies[submit["id"]]
        smell = hashlib.sha1(
            (works[submit["job"]]["prefix"] + str(submit["nonce"])).encode("ascii")
        ).hexdigest()
        assert (
            reply["job"] == submit["job"] and reply["accepted"] is True and reply["smell"] == smell
        )
        assert meets_pow(smell, works[submit["job"]]["bits"])
        accepted += 1
    assert accepted >= 1


# -- cheeses, transactions and what is derived from them ------------------------------------


def _load(block: Block) -> Any:
    return json.loads(block.text)


def test_checked_cheeses_transactions_and_derived_texts(vectors_dir) -> None:
    with open(os.path.join(vectors_dir, "chain-vectors.json"), encoding="utf-8") as f:
        chain = json.load(f)
    with open(os.path.join(vectors_dir, "blue-cheese-cheesecoin.json"), encoding="utf-8") as f:
        blue = json.load(f)
    cheese: Optional[dict] = None
    tx: Optional[dict] = None
    checked = 0
    for block in doc_blocks():
        if block.check is None or block.check.startswith("http"):
            continue
        where = f"docs/protocol.md:{block.line} ({block.check})"
        if block.check == "cheese":
            cheese = _load(block)
            check_header_format(cheese)
            check_smell(cheese)
            if cheese["sequence_number"] == 0:
                network_from_blue_cheese(cheese)
                assert cheese == blue, where
            else:
                check_member_info(cheese["unit_of_information"])
                assert all(
                    verify_signature(t) for t in cheese["unit_of_information"]["transactions"]
                ), where
                assert cheese in chain["cheeses"], f"{where}: not a cheese of the vectors"
        elif block.check == "tx":
            tx = _load(block)
            assert check_tx_format(tx) is None and verify_signature(tx), where
        else:
            text = block.text.strip()
            expected = {
                "canonical info": lambda: canonical(cheese["unit_of_information"]).decode("utf-8"),
                "info hash": lambda: info_hash(cheese["unit_of_information"]),
                "preimage": lambda: preimage(cheese),
                "smell": lambda: compute_smell(cheese),
                "signing text": lambda: signing_bytes(tx).decode("utf-8"),
                "txid": lambda: txid(tx),
            }.get(block.check)
            assert expected is not None, f"{where}: unknown check"
            assert text == expected(), where
            if block.check == "smell":
                assert text == cheese["smell"], where
            if block.check == "preimage":
                assert text in chain["preimages"], where
            if block.check == "info hash":
                assert text in chain["info_hashes"], where
            if block.check == "txid":
                assert text in chain["txids"].values(), where
        checked += 1
    assert checked >= 10


# -- the HTTP answers -----------------------------------------------------------------------


def _response(raw: bytes) -> tuple:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n", 1)[0].split()[1])
    return status, body


def test_http_examples_are_the_real_answers(vectors_dir, monkeypatch) -> None:
    # The doc shows a member whose miner has the SHA extensions; the answer is
    # otherwise the same on every machine.
    monkeypatch.setattr(pow_mod, "backend", lambda: "sha-ni")
    with open(os.path.join(vectors_dir, "chain-vectors.json"), encoding="utf-8") as f:
        cheeses = json.load(f)["cheeses"]
    stack = CheeseStack(
        network_from_blue_cheese(cheeses[0]), clock=lambda: cheeses[-1]["timestamp"] + 60
    )
    for cheese in cheeses[1:]:
        stack.add_cheese(cheese)
    node = MemberNode(
        stack,
        node_id="5f0c3a9e1d2b4c6a8e0f1a2b3c4d5e6f",
        clock=lambda: cheeses[-1]["timestamp"] + 11,
    )
    site = api.make_site(node)
    site._reactor = Clock()  # the channel's timeouts, never run

    def request(method: str, path: str, body: Optional[bytes]) -> tuple:
        head = f"{method} {path} HTTP/1.1\r\nHost: member\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(head.encode("latin-1") + b"\r\n" + (body or b""))
        channel.connectionLost(None)
        return _response(transport.value())

    tx: Optional[dict] = None
    asked = 0
    for block in doc_blocks():
        if block.check == "tx":
            tx = json.loads(block.text)
        if block.check is None or not block.check.startswith("http "):
            continue
        method, path, status, *rest = block.check.split(" ", 4)[1:]
        body = rest[0].encode("utf-8") if rest else None
        if method == "POST" and body is None:
            assert tx is not None, f"line {block.line}: no transaction above this POST"
            body = json.dumps(tx).encode("utf-8")
        got_status, got_body = request(method, path, body)
        where = f"docs/protocol.md:{block.line}: {method} {path}"
        assert got_status == int(status), f"{where}: status {got_status}, answer {got_body[:300]!r}"
        assert json.loads(got_body) == json.loads(block.text), (
            f"{where}: the member answers {got_body.decode()}"
        )
        asked += 1
    assert asked >= 8


# -- the limits table -----------------------------------------------------------------------


def test_limits_table_matches_the_code() -> None:
    check_limits_table(read_doc(), 25)
