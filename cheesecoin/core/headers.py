"""A chain of headers checked before any body (docs/protocol.md section 5.1).

Headers-first sync asks a peer for headers, checks them here against the
cheeses we hold (links, sequence numbers, bits, timestamps; the caller has
checked each header's shape, smell and proof of work), and only then asks
for bodies. The chain is a list of ``Node``s that are not in the stack: they
carry the cumulative work the peer's stack would have.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring as _quote  # json.dumps(str, ensure_ascii=False), in C
from typing import Any, Dict, List, Optional, Set, Tuple

from cheesecoin.core.cheese import info_hash
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.interfaces import LinkChecker
from cheesecoin.core.signature import verify_batch
from cheesecoin.core.tree import Node
from cheesecoin.core.tx import fast_shape, signed_cheeses, tx_texts

_INFO_KEYS = frozenset(["miner", "transactions", "note"])


class HeaderChain:
    """Headers that extend a cheese of ``stack``, in order, each checked against its parent."""

    def __init__(self, stack: LinkChecker) -> None:
        self.stack = stack
        self.headers: List[dict] = []  # the headers of cheeses we do not have yet, in order
        self.nodes: List[Node] = []  # their nodes (parent links, work)
        self.tip: Optional[Node] = (
            None  # the last header's node (or a known cheese), None before any
        )

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
                    raise InvalidCheese(
                        "bad-parent", f"the header {header['smell']} is of an invalid cheese"
                    )
                if self.tip is not None and known.parent is not self.tip:
                    raise InvalidCheese(
                        "parent", f"the header {header['smell']} does not follow the one before it"
                    )
                self.tip = known
                continue
            parent = self.tip if self.tip is not None else stack.nodes.get(header["parent_smell"])
            if parent is None or parent.smell != header["parent_smell"]:
                raise InvalidCheese(
                    "parent", f"the header {header['smell']} does not follow the one before it"
                )
            stack.check_link(header, parent)
            node = Node(
                header["smell"],
                parent,
                header["sequence_number"],
                header["bits"],
                header["timestamp"],
                -1,
            )
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


def _plain_body(cheese: Any) -> Optional[Tuple[str, list]]:
    """(info_hash, signature items) of a body whose info and transactions all
    have the plain shape, each transaction's canonical texts built once; None
    otherwise (``checked_bodies`` then takes the general way)."""
    info = cheese.get("unit_of_information") if isinstance(cheese, dict) else None
    if not isinstance(info, dict) or not set(info) <= _INFO_KEYS or "miner" not in info:
        return None
    miner, note, txs = info["miner"], info.get("note", ""), info.get("transactions")
    if type(miner) is not str or type(note) is not str or not isinstance(txs, list):
        return None
    if not all(fast_shape(tx) for tx in txs):
        return None
    try:
        texts = [tx_texts(tx) for tx in txs]
        # canonical(info) as core.cheese.info_canonical writes it (keys sorted)
        head = '{"miner":' + _quote(miner) + (',"note":' + _quote(note) if "note" in info else "")
        text = head + ',"transactions":[' + ",".join(t for t, _ in texts) + "]}"
        ihash = hashlib.sha1(text.encode("utf-8")).hexdigest()
    except (UnicodeEncodeError, ValueError):  # a lone surrogate: malformed, refused by the stack
        return None
    return ihash, [(tx["from"], tx["signature"], signed) for tx, (_, signed) in zip(txs, texts)]


def checked_bodies(cheeses: list, offset: int = 0) -> Tuple[Set[int], Dict[int, Optional[str]]]:
    """For a worker: (indices plus ``offset`` of the bodies whose transactions
    are well formed and signed, the info_hash of each body by index). Pure.
    Each transaction's canonical text is built once, for both."""
    hashes: Dict[int, Optional[str]] = {}
    items: list = []
    owners: List[int] = []
    plain: Set[int] = set()
    others: List[int] = []
    for i, cheese in enumerate(cheeses):
        body = _plain_body(cheese)
        if body is None:
            hashes[i + offset] = body_hash(cheese)
            others.append(i)
            continue
        hashes[i + offset], found = body
        plain.add(i)
        items.extend(found)
        owners.extend([i] * len(found))
    bad = {owners[j] for j in verify_batch(items)}
    signed = {i + offset for i in plain - bad}
    if others:  # a body of another shape: the general check (which may still pass it)
        signed.update(others[k] + offset for k in signed_cheeses([cheeses[i] for i in others]))
    return signed, hashes
