"""The stack on disk: reload, crashes (kill -9 mid-write), bad database files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from cheesecoin.core.history import address_history
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of
from cheesecoin.storage.sqlite import DB_NAME, StorageError, open_stack
from cheesecoin.testing.chain import (
    BASE_TIME,
    key_from_seed,
    make_network,
    mine_child,
    payment_stack,
)

NET = make_network("storagetest", bits=1)
A = address_of(key_from_seed("alice"))
B = address_of(key_from_seed("bob"))
NOW = 4e9


def reference(cheeses):
    stack = CheeseStack(NET, clock=lambda: NOW)
    for c in cheeses:
        stack.add_cheese(c)
    return stack


def test_reload_gives_the_same_stack_and_ledger(tmp_path):
    cheeses = payment_stack(NET, 80, 5, n_keys=10)
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    for c in cheeses[1:]:
        stack.add_cheese(c)
    # a side branch, to be reloaded as part of the tree
    side = [mine_child(cheeses[70], NET.bits, B, timestamp=cheeses[70]["timestamp"] + 3)]
    stack.add_cheese(side[0])
    tip, ledger = stack.tip.smell, stack.ledger.copy()
    stack.close()
    again = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    assert again.tip.smell == tip and again.height == 80
    assert again.ledger == ledger
    assert side[0]["smell"] in again and not again.is_best(side[0]["smell"])
    assert again.ledger == reference(cheeses[1:]).ledger
    # the tx index is rebuilt too
    some_tx = cheeses[60]["unit_of_information"]["transactions"][0]
    from cheesecoin.core.tx import txid

    assert again.tx_height(txid(some_tx)) == 60


def test_headers_are_read_from_the_stored_texts(tmp_path):
    """header_at serves section 5.1 headers from the stored canonical texts
    (bodies not decoded): the same headers as from the decoded cheeses, and
    without filling the cache of decoded cheeses."""
    from cheesecoin.core.cheese import header_of

    cheeses = payment_stack(NET, 30, 4, n_keys=5)
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    for c in cheeses[1:]:
        stack.add_cheese(c)
    stack.close()
    again = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    again.store._cache.clear()
    assert [again.serving.header_at(h) for h in range(1, 31)] == [header_of(c) for c in cheeses[1:]]
    assert len(again.store._cache) == 0 and again.serving.header_at(31) is None
    again.close()


def test_reload_keeps_the_first_seen_tip_on_a_tie(tmp_path):
    one = [mine_child(NET.blue_cheese, NET.bits, A)]
    two = [mine_child(NET.blue_cheese, NET.bits, B, timestamp=BASE_TIME + 7)]
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    stack.add_cheese(two[0])
    stack.add_cheese(one[0])
    stack.close()
    assert open_stack(str(tmp_path), NET, clock=lambda: NOW).tip.smell == two[0]["smell"]


def test_invalid_marks_survive_a_restart(tmp_path):
    from cheesecoin.core.errors import InvalidCheese
    from cheesecoin.core.tx import sign_tx

    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    good = mine_child(NET.blue_cheese, NET.bits, A)
    stack.add_cheese(good)
    side = mine_child(NET.blue_cheese, NET.bits, B, timestamp=BASE_TIME + 3)
    bad = mine_child(side, NET.bits, B, [sign_tx(key_from_seed("carol"), A, 1, 0, 0)])
    stack.add_cheese(side)
    with pytest.raises(InvalidCheese):
        stack.add_cheese(bad)
    stack.close()
    again = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    assert again.tip.smell == good["smell"]
    with pytest.raises(InvalidCheese):
        again.add_cheese(bad)


def test_foreign_and_corrupted_files_get_a_clear_error(tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / DB_NAME).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match="not an SQLite database"):
        open_stack(str(junk), NET)

    other = tmp_path / "other"
    other.mkdir()
    db = sqlite3.connect(other / DB_NAME)
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="another program"):
        open_stack(str(other), NET)

    net_dir = tmp_path / "net"
    open_stack(str(net_dir), NET).close()
    with pytest.raises(StorageError, match="another network|network"):
        open_stack(str(net_dir), make_network("different", bits=1))

    broken = tmp_path / "broken"
    stack = open_stack(str(broken), NET)
    stack.add_cheese(mine_child(NET.blue_cheese, NET.bits, A))
    stack.close()
    db = sqlite3.connect(broken / DB_NAME)
    db.execute("UPDATE cheeses SET body = 'not json' WHERE height = 1")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="corrupted"):
        open_stack(str(broken), NET)

    truncated = tmp_path / "truncated"
    stack = open_stack(str(truncated), NET)
    for c in payment_stack(NET, 30, 2, n_keys=5)[1:]:
        stack.add_cheese(c)
    stack.close()
    path = truncated / DB_NAME
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * 4000 + data[4100:])
    with pytest.raises(StorageError):
        open_stack(str(truncated), NET)


def test_kill_9_during_writes_reloads_to_a_valid_tip(tmp_path):
    """A writer process is killed at random moments; each time the stack on
    disk reloads to a valid tip whose ledger equals a reference's."""
    cheeses = payment_stack(NET, 400, 3, n_keys=10)
    # Every 50 cheeses, add a competing branch one longer (a reorg on disk).
    stream = list(cheeses)
    side_parent = cheeses[100]
    side = []
    for _ in range(3):
        side_parent = mine_child(side_parent, NET.bits, B, timestamp=side_parent["timestamp"] + 1)
        side.append(side_parent)
    stream[150:150] = side
    cheeses_file = tmp_path / "cheeses.json"
    cheeses_file.write_text(json.dumps(stream))
    data_dir = tmp_path / "data"
    ref_by_tip = {}
    ref = CheeseStack(NET, clock=lambda: NOW)
    ref_by_tip[ref.tip.smell] = ref.ledger.copy()
    for c in stream[1:]:
        ref.add_cheese(c)
        ref_by_tip[ref.tip.smell] = ref.ledger.copy()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]
            + sys.path
        ),
    )
    heights = []
    for delay in (0.3, 0.5, 0.7, 0.9, 1.2):
        proc = subprocess.Popen(
            [
                sys.executable,
                os.path.join(os.path.dirname(__file__), "crash_writer.py"),
                str(data_dir),
                str(cheeses_file),
            ],
            stdout=subprocess.PIPE,
            env=env,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stack = open_stack(str(data_dir), NET, clock=lambda: NOW)
        assert stack.tip.smell in ref_by_tip, "reloaded to a tip the writer never had"
        assert stack.ledger == ref_by_tip[stack.tip.smell]
        heights.append(stack.height)
        stack.close()
    assert heights == sorted(heights)
    assert heights[-1] > 0


def _index_rows(data_dir) -> list:
    db = sqlite3.connect(str(data_dir / DB_NAME))
    try:
        return sorted(db.execute("SELECT address, height, pos, smell FROM address_txs"))
    finally:
        db.close()


def _history(stack: CheeseStack, address: str, count: int, before=None):
    """The best stack's transactions of ``address`` (what the node's address_info lists)."""
    return address_history(stack.store, stack.main, address, count, before)


def test_a_batch_writes_the_address_index_at_its_end_and_reads_it_meanwhile(tmp_path):
    cheeses = payment_stack(NET, 30, 4, n_keys=6)
    payer = cheeses[-1]["unit_of_information"]["transactions"][0]["from"]
    reference_stack = reference(cheeses[1:])
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    with stack.batch():
        for c in cheeses[1:]:
            stack.add_cheese(c)
        assert _index_rows(tmp_path) == [], "the rows wait for the batch's end"
        during = _history(stack, payer, 500)
        assert during == _history(reference_stack, payer, 500) and during, "but are read meanwhile"
        assert _history(stack, payer, 3, before=20) == _history(
            reference_stack, payer, 3, before=20
        )
    rows = _index_rows(tmp_path)
    assert rows and _history(stack, payer, 500) == during
    stack.close()
    inline = tmp_path / "inline"
    one_by_one = open_stack(str(inline), NET, clock=lambda: NOW)
    for c in cheeses[1:]:
        one_by_one.add_cheese(c)
    one_by_one.close()
    assert _index_rows(inline) == rows, "the same rows as cheeses written outside a batch"


def test_a_crash_inside_a_batch_leaves_a_mark_and_the_next_open_indexes_again(tmp_path):
    cheeses = payment_stack(NET, 20, 3, n_keys=5)
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    for c in cheeses[1:8]:
        stack.add_cheese(c)
    before = _index_rows(tmp_path)
    batch = stack.batch()
    batch.__enter__()
    for c in cheeses[8:]:
        stack.add_cheese(c)
    stack.store.db.close()  # the process dies: the batch never ends
    db = sqlite3.connect(str(tmp_path / DB_NAME))
    assert (
        dict(db.execute("SELECT key, value FROM meta")).get("index_from") == "9"
    )  # the Blue Cheese is 1
    db.close()
    assert _index_rows(tmp_path) == before
    reopened = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    assert reopened.height == len(cheeses) - 1
    payer = cheeses[-1]["unit_of_information"]["transactions"][0]["from"]
    assert _history(reopened, payer, 500) == _history(reference(cheeses[1:]), payer, 500)
    db = sqlite3.connect(str(tmp_path / DB_NAME))
    assert "index_from" not in dict(db.execute("SELECT key, value FROM meta"))
    db.close()
    reopened.close()
