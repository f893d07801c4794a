"""What the cheese stack serves to peers (pure, no Twisted): headers, ranges
and locators of the best stack, stored texts, and its transactions by txid.

``CheeseStack`` (``cheesecoin.core.stack``) keeps the tree and the fork
choice; this module answers questions about what it holds, each at a cost
bounded by its answer (issue 26, findings 1 and 7):

- a header comes from the tree's ``Node`` (``Node.header``), never from the
  stored body;
- a confirmed transaction is found through the best stack's txid index,
  whose entry packs the cheese's height, the transaction's position and
  where its canonical text lies in the cheese's canonical text (sorted
  keys put ``transactions`` last, so each transaction's text is a fixed
  distance from the end): one transaction is read as a slice of the stored
  text, not by decoding the cheese and recomputing its txids;
- the txids of a cheese off the best stack (a side branch, a compact cheese
  being validated) are computed once and kept in a small LRU cache.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

from cheesecoin.core.cheese import header_from_text
from cheesecoin.core.formats import MAX_COUNT, MAX_LINE
from cheesecoin.core.interfaces import StackView, stored_body, stored_text
from cheesecoin.core.tx import tx_canonical_text, txid

_FIELD = 22  # bits of each packed field below the height (2**22 = the longest line)
_MASK = (1 << _FIELD) - 1
_TAIL = len("]}}")  # what follows the last transaction in a cheese's canonical text
SIDE_CHEESES = 16  # cheeses off the best stack whose txids are kept (an LRU)


def pack(height: int, pos: int, from_end: int, length: int) -> int:
    """An index entry: height, position, and the text's distance from the end and length
    (both 0: unknown, the cheese is then decoded)."""
    if pos > _MASK or from_end > _MASK or length > _MASK:
        pos, from_end, length = min(pos, _MASK), 0, 0
    return (((height << _FIELD | pos) << _FIELD) | from_end) << _FIELD | length


def unpack(entry: int) -> Tuple[int, int, int, int]:
    """(height, position, distance from the end, length) of an index entry."""
    return entry >> 3 * _FIELD, entry >> 2 * _FIELD & _MASK, entry >> _FIELD & _MASK, entry & _MASK


def index_txs(index: Dict[str, int], height: int, txs: List[dict]) -> None:
    """Add the transactions of the best-stack cheese at ``height`` to ``index``
    (runs for every loaded cheese: ``pack`` inlined)."""
    tail, base, sha1 = _TAIL, height << _FIELD, hashlib.sha1
    for pos in range(len(txs) - 1, -1, -1):
        text = tx_canonical_text(txs[pos])
        length = len(text)
        from_end = length + tail
        tail = from_end + 1  # the comma before it
        if from_end <= _MASK and pos <= _MASK:
            entry = (((base | pos) << _FIELD) | from_end) << _FIELD | length
        else:
            entry = pack(height, pos, 0, 0)
        index[sha1(text.encode("utf-8")).hexdigest()] = entry  # txid(tx), from the text at hand


def unindex_txs(index: Dict[str, int], txs: Iterable[dict]) -> None:
    for tx in txs:
        index.pop(txid(tx), None)


def tx_height(index: Dict[str, int], tx_id: str) -> Optional[int]:
    entry = index.get(tx_id)
    return None if entry is None else entry >> 3 * _FIELD


class StackServing:
    """The answers a ``CheeseStack`` gives peers and the API."""

    def __init__(self, stack: StackView) -> None:
        self.stack = stack
        self.side: "OrderedDict[str, Dict[str, dict]]" = OrderedDict()  # smell -> txid -> tx

    def get_text(self, smell: str, cache: bool = True) -> Optional[str]:
        """The canonical text of a cheese we hold; ``cache=False`` for a text
        only passed on to a peer (not decoded into the store's cache)."""
        if smell not in self.stack.nodes:
            return None
        return self.stack.store.get_text(smell, cache)

    def header_at(self, height: int) -> Optional[dict]:
        """The header of the best-stack cheese at ``height`` (section 5.1), from
        its node in memory, else (the Blue Cheese) from its stored text: the
        body is neither decoded nor encoded again."""
        main = self.stack.main
        if not 0 <= height < len(main):
            return None
        header = main[height].header()
        if header is None:  # the Blue Cheese (no parent node), or a node without ident
            text = self.stack.store.get_text(main[height].smell, cache=False)
            return None if text is None else header_from_text(text)
        return header

    def locator(self) -> List[str]:
        """Smells of the best stack from the tip back: 10 dense, then doubling steps."""
        main = self.stack.main
        out = []
        height, step = len(main) - 1, 1
        while height > 0:
            out.append(main[height].smell)
            if len(out) >= 10:
                step *= 2
            height -= step
        out.append(main[0].smell)
        return out

    def fork_height(self, locator: Iterable[str]) -> int:
        """Height of the first locator smell on the best stack (0 if none)."""
        for smell in locator:
            node = self.stack.nodes.get(smell)
            if node is not None and self.stack.on_main(node):
                return node.height
        return 0

    def range_texts(
        self, start: int, count: int = MAX_COUNT, max_bytes: int = MAX_LINE - 4096
    ) -> List[str]:
        """Canonical texts of best-stack cheeses from ``start``, within ``max_bytes``."""
        main, store = self.stack.main, self.stack.store
        out: List[str] = []
        total = 0
        for height in range(max(0, start), min(len(main), start + max(0, min(count, MAX_COUNT)))):
            text = stored_text(store, main[height].smell)
            total += len(text.encode("utf-8")) + 1
            if total > max_bytes:
                break
            out.append(text)
        return out

    # -- transactions -------------------------------------------------------------------

    def confirmed_tx(self, tx_id: str) -> Optional[Tuple[int, dict]]:
        """(height, tx) of a transaction confirmed on the best stack: one index
        look-up and one slice of its cheese's stored text."""
        entry = self.stack.tx_index.get(tx_id)
        if entry is None:
            return None
        height, pos, from_end, length = unpack(entry)
        smell = self.stack.main[height].smell
        if from_end:
            text = self.stack.store.text_slice(smell, from_end, length)
            try:
                tx = json.loads(text) if text else None
            except ValueError:
                tx = None
            if isinstance(tx, dict) and txid(tx) == tx_id:
                return height, tx
        # A store that holds bodies decoded (MemoryStore), or a stored text of another
        # shape: the transaction at its position in the body.
        txs = stored_body(self.stack.store, smell)["unit_of_information"]["transactions"]
        if pos < len(txs) and txid(txs[pos]) == tx_id:
            return height, txs[pos]
        for tx in txs:  # pragma: no cover - an index entry that lost its position
            if txid(tx) == tx_id:
                return height, tx
        return None  # pragma: no cover

    def cheese_txs(self, smell: str, cheese: dict) -> Dict[str, dict]:
        """txid -> tx of a cheese off the best stack, computed once per smell while it
        stays among the SIDE_CHEESES most recently asked (the LRU)."""
        found = self.side.get(smell)
        if found is not None:
            self.side.move_to_end(smell)
            return found
        found = {}
        for tx in cheese["unit_of_information"].get("transactions", []):
            found.setdefault(txid(tx), tx)
        self.side[smell] = found
        while len(self.side) > SIDE_CHEESES:
            self.side.popitem(last=False)
        return found
