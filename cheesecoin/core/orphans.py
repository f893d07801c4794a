"""The bounded pool of orphans (pure, no Twisted): cheeses whose parent is
not known yet, kept until it comes or newer orphans push them out."""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from cheesecoin.core.interfaces import Source


class OrphanPool:
    """Cheeses whose parent is not known yet, bounded in count (oldest evicted)."""

    def __init__(self, max_count: int = 256) -> None:
        self.max_count = max_count
        # smell -> (cheese, source): the source is whoever handed it over, kept as is
        self.entries: "OrderedDict[str, Tuple[dict, object]]" = OrderedDict()
        self.by_parent: Dict[str, List[str]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, smell: str) -> bool:
        return smell in self.entries

    def add(self, cheese: dict, source: Source = None) -> None:
        smell = cheese["smell"]
        if smell in self.entries or self.max_count <= 0:
            return
        while len(self.entries) >= self.max_count:
            self._remove(next(iter(self.entries)))
        self.entries[smell] = (cheese, source)
        self.by_parent.setdefault(cheese["parent_smell"], []).append(smell)

    def _remove(self, smell: str) -> Optional[Tuple[dict, object]]:
        entry = self.entries.pop(smell, None)
        if entry is not None:
            parent = entry[0]["parent_smell"]
            children = self.by_parent.get(parent, [])
            if smell in children:
                children.remove(smell)
            if not children:
                self.by_parent.pop(parent, None)
        return entry

    def pop_children(self, parent_smell: str) -> List[Tuple[dict, object]]:
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
