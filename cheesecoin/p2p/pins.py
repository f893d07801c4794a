"""Pinned identities (docs/protocol.md section 5.3): the node_id an address must prove.

Three sources, in order of authority: ``--connect HOST:PORT@NODE_ID``
(fixed, never changed by anything else), the tracker's ``PEERS`` lists, and
the addresses we dialled that proved their node_id over TLS (saved in
``pins.json`` and loaded at the next start). A member that dials a pinned
address refuses a ``HELLO`` there that names another node_id or does not
list ``tls``. Node ids a peer tells us in ``GET_PEERS`` answers are never
pinned: a hostile peer could otherwise make us refuse honest members.

Kept apart from the address book (``cheesecoin.p2p.peers``) so that neither
needs the other; bounded (``MAX_PINS`` learned ones, least recently
confirmed forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional

from cheesecoin.core.formats import IDENTITY_RE
from cheesecoin.util.addresses import Address

MAX_PINS = 4096


class Pins:
    """address -> the node_id it must prove: fixed ones and a bounded learned map."""

    def __init__(self, max_learned: int = MAX_PINS) -> None:
        self.fixed: Dict[Address, str] = {}
        self.learned: "OrderedDict[Address, str]" = OrderedDict()  # oldest first
        self.max_learned = max_learned

    def __len__(self) -> int:
        return len(self.fixed) + len(self.learned)

    def get(self, address: Optional[Address]) -> Optional[str]:
        if address is None:
            return None
        found = self.fixed.get(address)
        return found if found is not None else self.learned.get(address)

    def fix(self, address: Address, node_id: str) -> None:
        """A --connect HOST:PORT@NODE_ID."""
        self.fixed[address] = node_id
        self.learned.pop(address, None)

    def learn(self, address: Address, node_id: str) -> bool:
        """The tracker listed, or an encrypted link proved, ``node_id`` at ``address``;
        False when it is not an identity key or the address is fixed to another."""
        if not IDENTITY_RE.match(node_id) or address in self.fixed:
            return False
        self.learned.pop(address, None)
        self.learned[address] = node_id
        while len(self.learned) > self.max_learned:
            self.learned.popitem(last=False)
        return True

    def learn_listed(self, peers: List[Any]) -> int:
        """Learn the node_ids of a tracker's PEERS entries (malformed ones are skipped)."""
        count = 0
        for entry in peers:
            if not isinstance(entry, dict):
                continue
            host, port, node_id = entry.get("host"), entry.get("port"), entry.get("node_id")
            if (
                isinstance(host, str)
                and 0 < len(host) <= 255
                and type(port) is int
                and 1 <= port <= 65535
                and isinstance(node_id, str)
            ):
                count += self.learn((host, port), node_id)
        return count

    def annotate(self, entries: List[dict]) -> List[dict]:
        """PEERS entries with the node_id of each address where we know it."""
        out = []
        for entry in entries:
            node_id = self.get((entry.get("host"), entry.get("port")))  # type: ignore[arg-type]
            out.append(dict(entry, node_id=node_id) if node_id is not None else entry)
        return out

    def to_save(self) -> List[dict]:
        """The learned pins, oldest first (fixed ones come from the command line)."""
        return [{"host": h, "port": p, "node_id": n} for (h, p), n in self.learned.items()]

    def load_saved(self, entries: List[Any]) -> int:
        """Learn saved pins; malformed entries are skipped. The number learned."""
        return self.learn_listed(entries)
