"""The cheese tree's pieces (pure, no Twisted): a ``Node`` per known cheese
and what adding a cheese changed (``AddResult``). The in-memory store is
``cheesecoin.core.memstore``, the pool of orphans ``cheesecoin.core.orphans``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from cheesecoin.core.cheese import HEADER_FIELDS, work_of
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
        self.work: int = (parent.work if parent is not None else 0) + work_of(bits)
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
