"""``cheesecoin export`` (a stack of 1,200 cheeses, paged, that ``verify``
accepts) and ``cheesecoin history``, against the real API code."""

from __future__ import annotations

import json
import os

import pytest
from test_cli import (
    ALICE,
    BOB,
    A,
    B,
    Member,
    one_line_error,
    run,
)  # the API bridge of the CLI tests

from cheesecoin.cli import history as history_mod
from cheesecoin.core.tx import sign_tx
from cheesecoin.storage.wallet import create_wallet


@pytest.fixture
def member():
    m = Member()
    yield m
    m.stop()


def grow(member: Member, height: int) -> None:
    nonce = member.node.stack.ledger.next_nonce(A)
    while member.node.stack.height < height:
        txs = []
        if member.node.stack.height % 100 == 7 and member.node.stack.ledger.balance(A) > 10:
            txs = [sign_tx(ALICE, B, 3, 1, nonce, f"payment {nonce}")]
            nonce += 1
        member.mine(A, txs)


def test_export_of_a_1200_cheese_stack_verifies(capsys, member, tmp_path) -> None:
    grow(member, 1200)
    out = tmp_path / "stack.json"
    code, printed, err = run(capsys, "export", "--member", member.url, "--output", str(out))
    assert code == 0, err
    assert "exported 1201 cheeses (height 1200)" in printed
    cheeses = json.loads(out.read_text())
    assert len(cheeses) == 1201 and cheeses[0] == member.network.blue_cheese
    assert cheeses[-1]["smell"] == member.node.stack.tip.smell
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")], "a partial file was left"
    code, printed, err = run(capsys, "verify", str(out), "--workers", "1")
    assert code == 0, err
    verified = json.loads(printed)
    assert verified["height"] == 1200 and verified["tip"] == member.node.stack.tip.smell
    assert verified["balances"][B] == member.node.stack.ledger.balance(B) > 0


def test_export_to_stdout_is_the_same_array(capsys, member) -> None:
    grow(member, 7)
    code, printed, err = run(capsys, "export", "--member", member.url)
    assert code == 0 and "exported 8 cheeses" in err
    assert [c["smell"] for c in json.loads(printed)] == [
        member.node.stack.get_by_height(h)["smell"] for h in range(8)
    ]


def test_export_pages_through_the_api(capsys, member, tmp_path, monkeypatch) -> None:
    grow(member, 23)
    monkeypatch.setattr(history_mod, "PAGE", 5)  # five cheeses a request: the pages must join up
    code, _, err = run(capsys, "export", "--member", member.url, "-o", str(tmp_path / "s.json"))
    assert code == 0, err
    assert len(json.loads((tmp_path / "s.json").read_text())) == 24


def test_a_reorganisation_during_the_export_is_said_and_leaves_no_file(
    capsys, member, tmp_path, monkeypatch
) -> None:
    grow(member, 12)
    real_get = history_mod.Member.get
    calls = []

    def get(self, path):
        answer = real_get(self, path)
        calls.append(path)
        if len(calls) == 1:  # a longer branch from cheese 3 takes over after the first page
            from cheesecoin.testing.chain import mine_child

            tip = member.node.stack.get_by_height(3)
            for i in range(12):
                tip = mine_child(tip, member.network.bits, B, [], start_nonce=70_000 + i)
                member.node.submit_cheese(tip)
        return answer

    monkeypatch.setattr(history_mod, "PAGE", 5)
    monkeypatch.setattr(history_mod.Member, "get", get)
    target = tmp_path / "s.json"
    code, _, err = run(capsys, "export", "--member", member.url, "-o", str(target))
    assert code == 1
    one_line_error(err, "changed under the export at sequence number 5", "run it again")
    assert not target.exists() and not os.listdir(tmp_path)


def test_export_errors_are_one_line(capsys, member, tmp_path) -> None:
    code, _, err = run(
        capsys, "export", "--member", member.url, "-o", str(tmp_path / "no" / "dir" / "s.json")
    )
    assert code == 1
    one_line_error(err, "cannot write in")
    code, _, err = run(capsys, "export", "--member", member.url, "-o", str(tmp_path))
    assert code == 1
    one_line_error(err, "is a directory")
    code, _, err = run(
        capsys, "export", "--member", "http://127.0.0.1:9", "-o", str(tmp_path / "x.json")
    )
    assert code == 1
    one_line_error(err, "cannot reach the member")
    assert not (tmp_path / "x.json").exists()


def test_history_newest_first_with_the_pending_ones(capsys, member, tmp_path) -> None:
    member.mine(A, [sign_tx(ALICE, B, 5, 1, 0, "coffee")])
    member.mine(A, [sign_tx(ALICE, B, 6, 1, 1, "")])
    member.node.submit_tx(sign_tx(BOB, A, 2, 1, 0, "back"))
    code, out, err = run(capsys, "history", B, "--member", member.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"address  {B}" and lines[1] == "balance  11 (pending 8)"
    rows = lines[3:]
    assert rows[0].split()[:3] == ["pending", "out", "-3"] and '"back"' in rows[0]
    assert rows[1].split()[:3] == ["4", "in", "+6"]
    assert rows[2].split()[:3] == ["3", "in", "+5"] and '"coffee"' in rows[2]
    code, out, _ = run(capsys, "history", B, "--member", member.url, "--count", "2")
    assert "(older ones: --before 4)" in out
    code, out, _ = run(capsys, "history", B, "--member", member.url, "--json", "--before", "4")
    answer = json.loads(out)
    assert [t["sequence_number"] for t in answer["transactions"]] == [3]


def test_history_of_the_wallet_and_errors(capsys, member, tmp_path) -> None:
    wallet = create_wallet(str(tmp_path / "alice.json"), private_key=ALICE).path
    code, out, _ = run(capsys, "history", "--wallet", wallet, "--member", member.url)
    assert code == 0 and out.splitlines()[0] == f"address  {A}" and "no transactions" in out
    code, _, err = run(capsys, "history", "nope", "--member", member.url)
    assert code == 2
    one_line_error(err, "bad address")
    code, _, err = run(capsys, "history", B, "--count", "0", "--member", member.url)
    assert code == 2
    one_line_error(err, "count")
    code, _, err = run(
        capsys, "history", "--wallet", str(tmp_path / "none.json"), "--member", member.url
    )
    assert code == 1
    one_line_error(err, "or give an ADDRESS")
