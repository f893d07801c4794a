"""A failing disk never leaves the stack in memory ahead of the store.

The store's writes fail as a full disk makes them fail (SQLite's own
SQLITE_FULL, by filling a tiny database with a page-count limit): the
cheese that could not be committed is taken back from the tree, the best
stack, the ledger and the indexes; the error says what happened (not a
"cannot rollback" that hides it); and a reload shows exactly what the stack
showed, with no hole.
"""

from __future__ import annotations

import copy
import sqlite3

import pytest

from cheesecoin.core.errors import StorageError
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.storage.sqlite import StoreWriteError, open_stack
from cheesecoin.testing.chain import ChainBuilder, make_network, payment_stack

NET = make_network("diskfull", bits=1)
NOW = 4e9


def fill_up(stack: CheeseStack) -> None:
    """Let the database grow no further: the next write that needs a page fails with SQLITE_FULL."""
    pages = stack.store.db.execute("PRAGMA page_count").fetchone()[0]
    stack.store.db.execute(f"PRAGMA max_page_count = {pages}")


def snapshot(stack: CheeseStack) -> tuple:
    return (
        stack.height,
        stack.tip.smell,
        stack.work,
        dict(stack.ledger.balances),
        dict(stack.ledger.nonces),
        dict(stack.tx_index),
        len(stack.nodes),
    )


def test_a_cheese_the_disk_cannot_take_is_not_held_in_memory(tmp_path):
    cheeses = payment_stack(NET, 30, 20, n_keys=6)
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    for c in cheeses[1:20]:
        stack.add_cheese(c)
    fill_up(stack)
    before = snapshot(stack)
    failed_at = None
    for c in cheeses[20:]:
        try:
            stack.add_cheese(copy.deepcopy(c))
        except StoreWriteError as e:
            failed_at = c["sequence_number"]
            assert e.disk_full and "is full" in str(e) and "rollback" not in str(e)
            break
        before = snapshot(stack)
    assert failed_at is not None, "the database never filled up"
    assert snapshot(stack) == before  # the refused cheese left no trace
    assert stack.serving.get_text(cheeses[failed_at]["smell"]) is None
    shown = (stack.height, stack.tip.smell)
    stack.close()
    reloaded = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    assert (reloaded.height, reloaded.tip.smell) == shown  # no hole, no --reindex
    # Once there is room again, the same cheese goes in.
    for c in cheeses[failed_at:]:
        reloaded.add_cheese(c)
    assert reloaded.height == 30


def test_a_reorganisation_the_disk_cannot_take_is_undone(tmp_path):
    base = ChainBuilder(NET).extend(NET.blue_cheese, 5, "aa" * 32)
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    for c in base:
        stack.add_cheese(c)
    fork = ChainBuilder(NET).extend(
        base[1], 4, "bb" * 32
    )  # heights 3-6: overtakes at its 4th cheese
    for c in fork[:3]:
        stack.add_cheese(c)
    before = snapshot(stack)
    stack.store.db = FullDisk(stack.store.db)
    with pytest.raises(StoreWriteError) as refused:
        stack.add_cheese(fork[3])
    assert refused.value.disk_full
    assert snapshot(stack) == before and stack.tip.smell == base[-1]["smell"]
    stack.store.db = stack.store.db.real
    stack.add_cheese(fork[3])  # with room again the reorganisation happens
    assert stack.tip.smell == fork[3]["smell"]


class FullDisk:
    """A connection whose COMMITs fail as on a full disk (SQLite then undoes the
    transaction itself)."""

    def __init__(self, real) -> None:
        self.real = real

    def execute(self, sql: str, *args):
        if sql == "COMMIT":
            self.real.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def test_the_node_reports_a_storage_failure_once_and_keeps_listeners_consistent(tmp_path):
    cheeses = payment_stack(NET, 25, 20, n_keys=6)
    stack = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    node = MemberNode(stack, clock=lambda: NOW)
    for c in cheeses[1:10]:
        node.submit_cheese(c)
    fill_up(stack)
    reported, tips = [], []
    node.storage_listeners.append(reported.append)
    node.tip_listeners.append(lambda result, source: tips.append(result.connected[-1]["smell"]))
    for c in cheeses[10:]:
        try:
            node.submit_cheese(c)
        except StorageError:
            pass
    assert len(reported) == 1 and isinstance(reported[0], StoreWriteError)
    # Every tip a listener heard of is on the disk.
    stack.close()
    reloaded = open_stack(str(tmp_path), NET, clock=lambda: NOW)
    assert all(smell in reloaded for smell in tips)
    assert (not tips) or reloaded.tip.smell == tips[-1]
