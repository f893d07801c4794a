"""A chain of headers checked before any body (docs/protocol.md section 5.1).

Headers-first sync asks a peer for headers, checks them here against the
cheeses we hold (links, sequence numbers, bits, timestamps; the caller has
checked each header's shape, smell and proof of work), and only then asks
for bodies. The chain is a list of ``Node``s that are not in the stack: they
carry the cumulative work the peer's stack would have.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from cheesecoin.core.cheese import info_hash
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.tree import Node
from cheesecoin.core.tx import signed_cheeses


class HeaderChain:
    """Headers that extend a cheese of ``stack``, in order, each checked against its parent."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.headers: List[dict] = []  # the headers of cheeses we do not have yet, in order
        self.nodes: List[Node] = []  # their nodes (parent links, work)
        self.tip: Optional[Node] = None  # the last header's node (or a known cheese), None before any

    @property
    def work(self) -> int:
        """Cumulative work at the last header (0 before any)."""
        return self.tip.work if self.tip is not None else 0

    def extend(self, headers: List[dict]) -> int:
        """Add the next headers (each already checked alone); returns how many were new.

        Raises InvalidCheese when one does not link to the one before it (or,
        for the first, to a cheese we hold), or breaks rules 2 to 4 of section 3.
        """
        stack, added = self.stack, 0
        for header in headers:
            known = stack.nodes.get(header["smell"])
            if known is not None and not self.nodes:  # still on cheeses we hold: walk along them
                if known.invalid:
                    raise InvalidCheese("bad-parent", f"the header {header['smell']} is of an invalid cheese")
                if self.tip is not None and known.parent is not self.tip:
                    raise InvalidCheese("parent", f"the header {header['smell']} does not follow the one before it")
                self.tip = known
                continue
            parent = self.tip if self.tip is not None else stack.nodes.get(header["parent_smell"])
            if parent is None or parent.smell != header["parent_smell"]:
                raise InvalidCheese("parent", f"the header {header['smell']} does not follow the one before it")
            stack.check_link(header, parent)
            node = Node(header["smell"], parent, header["sequence_number"], header["bits"], header["timestamp"], -1)
            self.headers.append(header)
            self.nodes.append(node)
            self.tip = node
            added += 1
        return added


def matches_fields(cheese: Any, header: dict) -> bool:
    """Whether a body has every field of ``header`` but its info_hash (that one is
    computed with the signatures, in ``checked_bodies``)."""
    if not isinstance(cheese, dict) or not isinstance(cheese.get("unit_of_information"), dict):
        return False
    return all(key == "info_hash" or cheese.get(key) == value for key, value in header.items())


def body_hash(cheese: Any) -> Optional[str]:
    """The info_hash of a body, None if it cannot be hashed."""
    try:
        return info_hash(cheese["unit_of_information"])
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError):
        return None


def checked_bodies(cheeses: list, offset: int = 0) -> Tuple[Set[int], Dict[int, Optional[str]]]:
    """For a worker: (indices plus ``offset`` of the bodies whose transactions
    are well formed and signed, the info_hash of each body by index). Pure."""
    hashes = {i + offset: body_hash(c) for i, c in enumerate(cheeses)}
    return signed_cheeses(cheeses, offset), hashes
