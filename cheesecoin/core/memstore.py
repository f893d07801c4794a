"""The in-memory store of cheese bodies (pure, no Twisted): the
``cheesecoin.core.interfaces.CheeseStore`` that tests and the simulator use;
``cheesecoin.storage.sqlite.SqliteStore`` is the same interface on disk."""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from cheesecoin.core.cheese import canonical
from cheesecoin.core.tree import Node


class MemoryStore:
    """Keeps cheese bodies in memory (a ``CheeseStore``); every commit is at
    once as durable as it gets, so a batch has nothing to flush."""

    def __init__(self) -> None:
        self.bodies: Dict[str, dict] = {}
        self.tip: Optional[str] = None
        self.invalid: Dict[str, str] = {}
        self.batch_depth = 0

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

    def flush(self) -> None:
        """Nothing waits for the end of a batch here."""

    def close(self) -> None:
        pass
