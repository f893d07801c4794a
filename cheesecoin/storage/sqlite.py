"""The cheese stack on disk: SQLite in the member's data directory.

Pure Python (standard library ``sqlite3``), no Twisted. The database runs in
WAL mode; every accepted cheese is one transaction that also records the tip
it leads to, so a crash at any point (kill -9) leaves the last committed
stack, never a half-written one. The commit that moves the tip runs with
``synchronous=FULL``; inside a batch (a sync download) commits are atomic but
not flushed one by one, and the batch ends with one flushed commit.

The address index is derived data: inside a batch its rows wait in memory
(``address_rows`` reads them too) and are written by the batch's last
commit, so each index page is written once per batch rather than once per
cheese (two thirds of the store's cost while syncing). The first commit of
such a batch records ``index_from`` (the first cheese not indexed) in the
same transaction; a store opened with that mark (a crash mid-batch)
indexes those cheeses again before anything else.
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

from cheesecoin.core.cheese import Network, canonical, check_smell
from cheesecoin.core.errors import InvalidCheese, StorageError

SCHEMA_VERSION = "2"  # 2 added the address index (a database of schema 1 is upgraded when opened)
APP_ID = "cheesecoin"
DB_NAME = "stack.sqlite3"
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


# Every best-stack or side-branch transaction by the addresses it touches
# (sender and receiver). Written in the same transaction as its cheese; the
# stack filters the rows of branches that are not its best stack, so a
# reorganisation needs no write here.
_ADDRESS_TABLE = """
CREATE TABLE address_txs (
    address TEXT NOT NULL,
    height INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    smell TEXT NOT NULL,
    PRIMARY KEY (address, height, pos, smell)
) WITHOUT ROWID
"""


class StoreWriteError(StorageError):
    """A write to the database failed (a full disk, a file made read-only, an
    I/O error): nothing of that write was kept. ``disk_full`` says which."""

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class CorruptStore(StorageError):
    """The database is damaged: what it holds no longer reads back whole.
    A reindex (re-validating the cheeses that still parse) can mend it; it
    cannot mend a foreign file, another network's stack or a disk we may not
    write, which are plain StorageErrors."""


class SqliteStore:
    """Stores cheeses, invalid marks and the tip; reads bodies back on demand."""

    def __init__(self, path: str, network: Network, cache_size: int = 2048) -> None:
        self.path = path
        self.network = network
        self.tip: Optional[str] = None
        self.batch_depth = 0
        self._synchronous = (
            ""  # the connection's PRAGMA synchronous, set again only when it changes
        )
        self._index_rows: List[
            Tuple[str, int, int, str]
        ] = []  # address rows this batch has not written
        self._index_marked = False  # 'index_from' is in meta (rows wait for the flush)
        self._cache: "OrderedDict[str, Tuple[str, dict]]" = OrderedDict()
        self._cache_size = cache_size
        if os.path.isdir(path):
            path = self.path = os.path.join(path, DB_NAME)
        try:
            self._check_header()
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            self._open_schema()
        except sqlite3.OperationalError as e:  # cannot open, read-only, I/O: not the file's fault
            raise StorageError(f"cannot use the database {path}: {e}") from None
        except sqlite3.DatabaseError as e:
            raise CorruptStore(f"{path} is not a usable CheeseCoin database: {e}") from None

    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            return
        except OSError as e:
            raise StorageError(f"cannot open {self.path}: {e.strerror}") from None
        if head and head != SQLITE_HEADER:
            raise StorageError(
                f"{self.path} is not an SQLite database (a foreign or corrupted file)"
            )

    def _open_schema(self) -> None:
        tables = {
            row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            self.db.executescript(
                """
                BEGIN;
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE cheeses (
                    ord INTEGER PRIMARY KEY AUTOINCREMENT,
                    smell TEXT NOT NULL UNIQUE,
                    parent TEXT NOT NULL,
                    height INTEGER NOT NULL,
                    body TEXT NOT NULL
                );
                CREATE TABLE invalid (smell TEXT PRIMARY KEY, rule TEXT NOT NULL);
                """
                + _ADDRESS_TABLE
                + ";\nCOMMIT;"
            )
            self.db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("app", APP_ID), ("schema", SCHEMA_VERSION), ("network", self.network.smell)],
            )
            return
        if not {"meta", "cheeses", "invalid"} <= tables:
            raise StorageError(f"{self.path} is an SQLite database of another program")
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if meta.get("app") != APP_ID:
            raise StorageError(f"{self.path} is an SQLite database of another program")
        if meta.get("schema") == "1" and meta.get("network") == self.network.smell:
            self._upgrade_from_1()
            meta["schema"] = SCHEMA_VERSION
        if meta.get("schema") != SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} has schema version {meta.get('schema')}, "
                f"this program reads {SCHEMA_VERSION}"
            )
        if meta.get("network") != self.network.smell:
            raise StorageError(
                f"{self.path} holds the stack of network {meta.get('network')}, "
                f"not {self.network.smell} ({self.network.name}); use another data directory"
            )
        self.tip = meta.get("tip")
        if "index_from" in meta:  # the last run ended inside a batch: index what it left out
            self._index_from(int(meta["index_from"]))

    def _index_from(self, first_ord: int) -> None:
        with self._write("FULL"):
            self._index_stored("WHERE ord >= ?", (first_ord,))
            self.db.execute("DELETE FROM meta WHERE key = 'index_from'")

    def _upgrade_from_1(self) -> None:
        """Schema 1 -> 2: add the address index and fill it from the stored cheeses,
        in one transaction."""
        with self._write("FULL"):
            self.db.execute(_ADDRESS_TABLE)
            self._index_stored("", ())
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def _index_stored(self, where: str, args: tuple) -> None:
        """Index the stored cheeses that ``where`` selects (inside a write)."""
        rows = self.db.execute(
            f"SELECT smell, height, body FROM cheeses {where} ORDER BY ord", args
        ).fetchall()
        for smell, height, body in rows:
            try:
                cheese = json.loads(body)
            except ValueError:
                continue  # a damaged row: loading the stack will say so (and --reindex mends it)
            self._write_index(self._address_rows(smell, height, cheese))

    def _write_index(self, rows: List[Tuple[str, int, int, str]]) -> None:
        if rows:
            self.db.executemany("INSERT OR IGNORE INTO address_txs VALUES (?, ?, ?, ?)", rows)

    @staticmethod
    def _address_rows(smell: str, height: int, cheese: Any) -> List[Tuple[str, int, int, str]]:
        unit = cheese.get("unit_of_information") if isinstance(cheese, dict) else None
        txs = unit.get("transactions") if isinstance(unit, dict) else None
        rows = []
        for pos, tx in enumerate(txs if isinstance(txs, list) else []):
            if not isinstance(tx, dict):
                continue
            for address in {tx.get("from"), tx.get("to")}:
                if isinstance(address, str):
                    rows.append((address, height, pos, smell))
        return rows

    # -- the store interface of cheesecoin.stack -------------------------------------

    def load(self) -> Tuple[Iterator[Tuple[dict, str]], Optional[str], Dict[str, str]]:
        """Every stored cheese in arrival order with its info_hash (streamed), the
        tip, and the invalid marks."""
        try:
            invalid = dict(self.db.execute("SELECT smell, rule FROM invalid"))
        except sqlite3.DatabaseError as e:
            raise CorruptStore(f"{self.path} is corrupted: {e}") from None
        return self._rows(), self.tip, invalid

    def _rows(self) -> Iterator[Tuple[dict, str]]:
        try:
            cursor = self.db.execute("SELECT smell, parent, height, body FROM cheeses ORDER BY ord")
            for smell, parent, height, body in cursor:
                cheese = json.loads(body)
                if (
                    not isinstance(cheese, dict)
                    or cheese.get("smell") != smell
                    or cheese.get("parent_smell") != parent
                    or cheese.get("sequence_number") != height
                ):
                    raise CorruptStore(f"{self.path}: stored cheese {smell} is corrupted")
                yield cheese, check_smell(cheese)
        except (sqlite3.DatabaseError, ValueError) as e:
            raise CorruptStore(f"{self.path} is corrupted: {e}") from None
        except InvalidCheese as e:
            raise CorruptStore(f"{self.path}: a stored cheese is corrupted ({e.message})") from None

    def get_text(self, smell: str, cache: bool = True) -> Optional[str]:
        """The canonical text of a stored cheese; with ``cache`` it is also
        decoded into the cache of recent cheeses (not for a text only passed on)."""
        entry = self._cache.get(smell)
        if entry is not None:
            self._cache.move_to_end(smell)
            return entry[0]
        row = self.db.execute("SELECT body FROM cheeses WHERE smell = ?", (smell,)).fetchone()
        if row is None:
            return None
        if cache:
            self._remember(smell, row[0], json.loads(row[0]))
        return row[0]

    def text_slice(self, smell: str, from_end: int, length: int) -> Optional[str]:
        """``length`` characters of a stored cheese's canonical text, starting
        ``from_end`` characters before its end (one transaction of it), read
        without decoding the cheese."""
        entry = self._cache.get(smell)
        if entry is not None:
            text = entry[0]
            return (
                text[len(text) - from_end : len(text) - from_end + length]
                if 0 < from_end <= len(text)
                else None
            )
        row = self.db.execute(
            "SELECT substr(body, ?, ?) FROM cheeses WHERE smell = ?", (-from_end, length, smell)
        ).fetchone()
        return None if row is None else row[0]

    def get(self, smell: str) -> Optional[dict]:
        entry = self._cache.get(smell)
        if entry is None:
            if self.get_text(smell) is None:
                return None
            entry = self._cache[smell]
        return entry[1]

    def _remember(self, smell: str, text: str, cheese: dict) -> None:
        self._cache[smell] = (text, cheese)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def commit(self, added: list, invalid: List[Tuple[str, str]], tip: Optional[str]) -> None:
        """One transaction: new cheeses, invalid marks and (if moved) the tip."""
        durable = tip is not None and self.batch_depth == 0
        texts = [(node.smell, canonical(cheese).decode("utf-8"), cheese) for node, cheese in added]
        later = self.batch_depth > 0  # the address rows wait for the batch's end (flush)
        rows: List[Tuple[str, int, int, str]] = []
        with self._write("FULL" if durable else "NORMAL"):
            if later and texts and not self._index_marked:
                self.db.execute(
                    "INSERT OR IGNORE INTO meta "
                    "SELECT 'index_from', COALESCE(MAX(ord), 0) + 1 FROM cheeses"
                )
            for smell, text, cheese in texts:
                self.db.execute(
                    "INSERT OR IGNORE INTO cheeses (smell, parent, height, body) "
                    "VALUES (?, ?, ?, ?)",
                    (smell, cheese["parent_smell"], cheese["sequence_number"], text),
                )
                rows.extend(self._address_rows(smell, cheese["sequence_number"], cheese))
            if not later:
                self._write_index(rows)
            if invalid:
                self.db.executemany("INSERT OR REPLACE INTO invalid VALUES (?, ?)", invalid)
            if tip is not None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?)", (tip,))
        if later and texts:
            self._index_rows.extend(rows)
            self._index_marked = True
        for smell, text, cheese in texts:  # only what is committed is served from the cache
            self._remember(smell, text, cheese)
        if tip is not None:
            self.tip = tip

    def address_rows(
        self, address: str, before: Optional[int] = None
    ) -> Iterator[Tuple[int, int, str]]:
        """(height, position, smell) of the stored cheeses' transactions from or to
        ``address`` (any branch), newest first; heights below ``before`` if given."""
        limit = before if before is not None else 2**63 - 1
        cursor = self.db.execute(
            "SELECT height, pos, smell FROM address_txs WHERE address = ? AND height < ? "
            "ORDER BY height DESC, pos DESC",
            (address, limit),
        )
        waiting = sorted(
            ((h, p, s) for a, h, p, s in self._index_rows if a == address and h < limit),
            reverse=True,
        )
        rows = (
            heapq.merge(cursor, waiting, key=lambda row: (row[0], row[1]), reverse=True)
            if waiting
            else cursor
        )
        try:
            for row in rows:
                yield row
        except sqlite3.DatabaseError as e:
            raise CorruptStore(f"{self.path} is corrupted: {e}") from None

    def flush(self) -> None:
        """Make everything committed so far durable (the end of a batch)."""
        with self._write("FULL"):
            if self._index_marked:
                self._write_index(sorted(self._index_rows))
                self.db.execute("DELETE FROM meta WHERE key = 'index_from'")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?)", (self.tip or "",))
        self._index_rows, self._index_marked = [], False

    @contextmanager
    def _write(self, synchronous: str) -> Iterator[None]:
        """One write transaction: committed at the end, undone on any error; a
        database error comes out as a StoreWriteError naming its real cause."""
        try:
            if self._synchronous != synchronous:  # a PRAGMA per cheese cost as much as its INSERT
                self.db.execute(f"PRAGMA synchronous={synchronous}")
                self._synchronous = synchronous
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.DatabaseError as e:
            raise self._write_error(e) from None

    def _rollback(self) -> None:
        """Undo an open transaction; SQLite may have undone it already (a full
        disk), and then ROLLBACK's own error must not hide the real one."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _write_error(self, e: sqlite3.DatabaseError) -> StoreWriteError:
        name = getattr(e, "sqlite_errorname", "")
        text = str(e)
        if name == "SQLITE_FULL" or "disk is full" in text:
            return StoreWriteError(
                f"the disk holding {os.path.dirname(self.path)} is full ({text})", disk_full=True
            )
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return StoreWriteError(f"{self.path} cannot be written: it is read-only ({text})")
        return StoreWriteError(f"cannot write {self.path}: {text}")

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM cheeses").fetchone()[0]

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass


def open_stack(data_dir: str, network: Network, **kwargs):
    """Open (or create) the stack stored in ``data_dir``; raises StorageError."""
    from cheesecoin.core.stack import CheeseStack

    os.makedirs(data_dir, exist_ok=True)
    store = SqliteStore(os.path.join(data_dir, DB_NAME), network)
    try:
        return CheeseStack(network, store=store, **kwargs)
    except ValueError as e:  # the stored cheeses do not form a stack
        store.close()
        raise CorruptStore(f"{store.path}: {e}") from None
