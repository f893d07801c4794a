"""Rebuilding a member's database from its stored cheeses (``--reindex``).

Pure Python, no Twisted. ``reindex(data_dir, network)`` reads every stored
cheese that still parses from ``stack.sqlite3`` (rows that are not JSON, or
whose smell no longer matches their body, are skipped), re-validates them
from scratch into a fresh database - every rule, signatures included, which
a normal start does not repeat - and atomically swaps the new file in,
keeping the old one as ``stack.sqlite3.bak``. A cheese whose parent was
lost or refused is dropped with it, so the member restarts at the longest
valid prefix of what it had. Used by ``twistd cheesemember --reindex`` and
``cheesecoin reindex DATA_DIR``; the member must not be running.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable, List

from cheesecoin.core.cheese import Network, check_smell
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.stack import CheeseStack
from cheesecoin.storage.sqlite import DB_NAME, SQLITE_HEADER, SqliteStore, StorageError

BACKUP_SUFFIX = ".bak"


@dataclass
class ReindexResult:
    """What a reindex read, kept and dropped."""

    rows: int = 0  # cheeses read from the old database
    unreadable: int = 0  # rows that are not JSON or whose smell does not match
    invalid: int = 0  # parsed cheeses that broke a rule
    orphaned: int = 0  # parsed cheeses whose parent was dropped or missing
    kept: int = 0  # cheeses in the new database (the Blue Cheese included)
    height: int = 0
    tip: str = ""
    backup: str = ""
    read_error: str = ""  # the old database could not be read past a damaged page

    def summary(self) -> str:
        damaged = (
            f" (reading stopped at a damaged page: {self.read_error})" if self.read_error else ""
        )
        return (
            f"reindexed {self.rows} stored cheeses{damaged}: kept {self.kept}, "
            f"dropped {self.unreadable} unreadable, {self.invalid} invalid and "
            f"{self.orphaned} without a valid parent; height {self.height}, "
            f"tip {self.tip}; the old database is {self.backup}"
        )


def _read_rows(path: str, network: Network, result: ReindexResult) -> List[dict]:
    """Every stored cheese that still parses and matches its smell, in arrival order."""
    try:
        with open(path, "rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise StorageError(f"{path} is not an SQLite database; nothing to reindex")
    except FileNotFoundError:
        raise StorageError(f"{path} does not exist; nothing to reindex") from None
    except OSError as e:
        raise StorageError(f"cannot open {path}: {e.strerror}") from None
    cheeses = []
    db = sqlite3.connect(path, isolation_level=None)
    try:
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as e:
            raise StorageError(
                f"{path} cannot be read at all ({e}); start from an empty data directory"
            ) from None
        if meta.get("network") != network.smell:
            raise StorageError(
                f"{path} holds the stack of network {meta.get('network')}, not {network.name}"
            )
        try:
            for (body,) in db.execute("SELECT body FROM cheeses ORDER BY ord"):
                result.rows += 1
                try:
                    cheese = json.loads(body)
                    if not isinstance(cheese, dict):
                        raise ValueError("not an object")
                    check_smell(cheese)
                except (ValueError, TypeError, KeyError, InvalidCheese, RecursionError):
                    result.unreadable += 1
                    continue
                cheeses.append(cheese)
        except sqlite3.DatabaseError as e:  # a damaged page: keep what was read before it
            result.read_error = str(e)
    finally:
        db.close()  # the last connection: SQLite folds the WAL back into the file
    return cheeses


def _remove(path: str) -> None:
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass


def reindex(
    data_dir: str,
    network: Network,
    clock: Callable[[], float] = time.time,
    log: Callable[[str], None] = lambda s: None,
) -> ReindexResult:
    """Rebuild ``data_dir``'s database from its stored cheeses; raises StorageError."""
    path = os.path.join(data_dir, DB_NAME)
    fresh = path + ".reindex"
    backup = path + BACKUP_SUFFIX
    result = ReindexResult(backup=backup)
    cheeses = _read_rows(path, network, result)
    _remove(fresh)
    store = SqliteStore(fresh, network)
    try:
        stack = CheeseStack(network, store=store, clock=clock)
        with stack.batch():
            for cheese in cheeses:
                # the Blue Cheese: already there (or of another network: refused above)
                if cheese.get("sequence_number") == 0:
                    continue
                parent = cheese.get("parent_smell")
                if not isinstance(parent, str) or parent not in stack:
                    result.orphaned += 1
                    continue
                try:
                    stack.add_cheese(cheese, check_signatures=True)
                except InvalidCheese as e:
                    if e.rule == "bad-parent":
                        result.orphaned += 1
                    else:
                        result.invalid += 1
                        log(
                            f"dropped cheese {cheese.get('sequence_number')} "
                            f"{cheese.get('smell')}: {e.message}"
                        )
        result.kept = store.count()
        result.height, result.tip = stack.height, stack.tip.smell
        store.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to move
    except sqlite3.DatabaseError as e:
        raise StorageError(f"cannot write {fresh}: {e}") from None
    finally:
        store.close()
    # The swap: the old file stays as .bak (with a WAL SQLite could not fold in,
    # if any), then one rename puts the new one in place.
    _remove(backup)
    try:
        os.link(path, backup)
    except OSError:  # a file system without hard links
        shutil.copy2(path, backup)
    if os.path.exists(path + "-wal"):
        os.replace(path + "-wal", backup + "-wal")
    for name in (path + "-shm", path + "-journal"):
        if os.path.exists(name):
            os.remove(name)
    os.replace(fresh, path)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return result
