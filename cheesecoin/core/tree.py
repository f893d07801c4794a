"""The pieces of the cheese tree (pure, no Twisted): a ``Node`` per known
cheese, what adding a cheese changed (``AddResult``), the in-memory store
(the interface ``cheesecoin.storage.sqlite.SqliteStore`` implements on disk)
and the bounded pool of orphans."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from cheesecoin.core.cheese import HEADER_FIELDS, canonical, work_of
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.tx import txid


class Node:
    """A cheese in the tree: its header facts and cumulative work.

    ``ident`` is the rest of its header, info_hash (20 bytes) then nonce (8
    bytes, big-endian), when known: the header is then served from memory
    (``header``) without reading the body (issue 26, finding 7)."""

    __slots__ = (
        "smell",
        "parent",
        "height",
        "bits",
        "timestamp",
        "work",
        "order",
        "invalid",
        "ident",
    )

    def __init__(
        self,
        smell: str,
        parent: Optional["Node"],
        height: int,
        bits: int,
        timestamp: int,
        order: int,
        info_hash: Optional[str] = None,
        nonce: Optional[int] = None,
    ):
        self.smell = smell
        self.parent = parent
        self.height = height
        self.bits = bits
        self.timestamp = timestamp
        self.work = (parent.work if parent is not None else 0) + work_of(bits)
        self.order = order  # arrival order: first seen wins ties
        self.invalid: Optional[str] = None
        self.ident: Optional[bytes] = None
        if info_hash is not None and nonce is not None and 0 <= nonce < 2**64:
            self.ident = bytes.fromhex(info_hash) + nonce.to_bytes(8, "big")

    def header(self) -> Optional[dict]:
        """Its header (docs/protocol.md 5.1) from memory; None without ``ident`` or a parent."""
        ident, parent = self.ident, self.parent
        if ident is None or parent is None:
            return None
        values = (
            parent.smell,
            self.height,
            self.timestamp,
            self.bits,
            ident[:20].hex(),
            int.from_bytes(ident[20:], "big"),
            self.smell,
        )
        return dict(zip(HEADER_FIELDS, values))

    def __repr__(self) -> str:
        return f"<Node {self.height} {self.smell[:12]}>"


@dataclass
class AddResult:
    """What adding one cheese changed."""

    status: str  # "added", "duplicate" or "orphan"
    smell: str
    accepted: List[str] = field(default_factory=list)  # smells stored by this call
    connected: List[dict] = field(default_factory=list)  # now on the best stack, lowest first
    disconnected: List[dict] = field(default_factory=list)  # left the best stack, highest first
    invalid: List[Tuple[str, InvalidCheese]] = field(default_factory=list)  # found invalid
    missing_parent: Optional[str] = None  # for an orphan

    @property
    def tip_changed(self) -> bool:
        return bool(self.connected or self.disconnected)

    @property
    def reorganized(self) -> bool:
        return bool(self.disconnected)

    def confirmed_txs(self) -> List[dict]:
        return [tx for c in self.connected for tx in c["unit_of_information"]["transactions"]]

    def abandoned_txs(self) -> List[dict]:
        """Transactions of the abandoned branch that the new branch does not hold."""
        if not self.disconnected:
            return []
        kept = {txid(tx) for tx in self.confirmed_txs()}
        out = []
        for cheese in reversed(self.disconnected):
            for tx in cheese["unit_of_information"]["transactions"]:
                if txid(tx) not in kept:
                    out.append(tx)
        return out


class MemoryStore:
    """Keeps cheese bodies in memory; the interface SqliteStore implements."""

    def __init__(self) -> None:
        self.bodies: Dict[str, dict] = {}
        self.tip: Optional[str] = None
        self.invalid: Dict[str, str] = {}

    def load(self) -> Tuple[Iterable[Tuple[dict, str]], Optional[str], Dict[str, str]]:
        """(cheese, info_hash) of every stored cheese, the tip and the invalid marks."""
        return [], None, {}

    def get(self, smell: str) -> Optional[dict]:
        return self.bodies.get(smell)

    def get_text(self, smell: str, cache: bool = True) -> Optional[str]:
        cheese = self.bodies.get(smell)
        return None if cheese is None else canonical(cheese).decode("utf-8")

    def text_slice(self, smell: str, from_end: int, length: int) -> Optional[str]:
        """None: bodies are held decoded here, so a transaction is taken from its
        body (``SqliteStore.text_slice`` reads one from the stored text)."""
        return None

    def commit(
        self, added: List[Tuple[Node, dict]], invalid: List[Tuple[str, str]], tip: Optional[str]
    ) -> None:
        for node, cheese in added:
            self.bodies[node.smell] = cheese
        for smell, rule in invalid:
            self.invalid[smell] = rule
        if tip is not None:
            self.tip = tip

    def address_rows(
        self, address: str, before: Optional[int] = None
    ) -> Iterator[Tuple[int, int, str]]:
        """(height, position, smell) of every stored transaction from or to
        ``address``, newest first (a scan: this store is for tests and the simulator)."""
        rows = []
        for smell, cheese in self.bodies.items():
            height = cheese["sequence_number"]
            if before is not None and height >= before:
                continue
            for pos, tx in enumerate(cheese["unit_of_information"].get("transactions", [])):
                if address in (tx["from"], tx["to"]):
                    rows.append((height, pos, smell))
        return iter(sorted(rows, reverse=True))

    def close(self) -> None:
        pass


class OrphanPool:
    """Cheeses whose parent is not known yet, bounded in count (oldest evicted)."""

    def __init__(self, max_count: int = 256) -> None:
        self.max_count = max_count
        self.entries: "OrderedDict[str, Tuple[dict, Any]]" = OrderedDict()
        self.by_parent: Dict[str, List[str]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, smell: str) -> bool:
        return smell in self.entries

    def add(self, cheese: dict, source: Any = None) -> None:
        smell = cheese["smell"]
        if smell in self.entries or self.max_count <= 0:
            return
        while len(self.entries) >= self.max_count:
            self._remove(next(iter(self.entries)))
        self.entries[smell] = (cheese, source)
        self.by_parent.setdefault(cheese["parent_smell"], []).append(smell)

    def _remove(self, smell: str) -> Optional[Tuple[dict, Any]]:
        entry = self.entries.pop(smell, None)
        if entry is not None:
            parent = entry[0]["parent_smell"]
            children = self.by_parent.get(parent, [])
            if smell in children:
                children.remove(smell)
            if not children:
                self.by_parent.pop(parent, None)
        return entry

    def pop_children(self, parent_smell: str) -> List[Tuple[dict, Any]]:
        return [
            e for e in (self._remove(s) for s in list(self.by_parent.get(parent_smell, ()))) if e
        ]

    def root_of(self, smell: str) -> str:
        """The first missing ancestor's smell for an orphan."""
        seen = 0
        while smell in self.entries and seen <= self.max_count:
            smell = self.entries[smell][0]["parent_smell"]
            seen += 1
        return smell
