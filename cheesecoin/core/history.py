"""An address's history on the best stack (pure, no Twisted).

The store keeps an index of address rows (height, position, smell) for
every stored cheese, the best stack's and the side branches'; the ledger
(``cheesecoin.core.ledger``) keeps only balances and nonces. This module
reads the rows of the best stack back as transactions, a page at a time.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from cheesecoin.core.interfaces import CheeseStore, stored_body
from cheesecoin.core.tree import Node


def address_history(
    store: CheeseStore,
    main: Sequence[Node],
    address: str,
    count: int,
    before: Optional[int] = None,
) -> List[Tuple[int, dict]]:
    """(height, tx) of the best stack's (``main``) transactions from or to
    ``address``, newest first, at most ``count``, below height ``before``. A
    page ends between two cheeses when it can, so that ``before`` = its last
    height loses nothing."""
    page: List[Tuple[int, dict]] = []
    if count <= 0:
        return page
    for height, pos, smell in store.address_rows(address, before):
        if height >= len(main) or main[height].smell != smell:
            continue  # a side branch's
        if len(page) >= count:
            if page[0][0] != height and page[-1][0] == height:
                while page and page[-1][0] == height:  # not half a cheese
                    page.pop()
            break
        body = stored_body(store, smell)
        page.append((height, body["unit_of_information"]["transactions"][pos]))
    return page
