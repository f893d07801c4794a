"""The address book: the members we know to be listening, with dial backoff."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, List, Optional, Set, Tuple

from cheesecoin.core.errors import ProtocolError
from cheesecoin.wire import codec as wire

MAX_KNOWN_ADDRESSES = 2000
MAX_SAVED_ADDRESSES = 256  # addresses of members that worked, kept across restarts
Address = Tuple[str, int]


def _address_of(entry: Any) -> Optional[Address]:
    """(host, port) of a {"host", "port"} entry, or None if it is not a valid one."""
    if not isinstance(entry, dict):
        return None
    try:
        return (wire.get_host(entry, "host"), wire.get_port(entry, "port"))  # type: ignore[return-value]
    except ProtocolError:
        return None


class AddressInfo:
    """What we know of one listening address: failures, when to try again, whether it answered."""

    __slots__ = ("failures", "next_try", "confirmed", "last_seen")

    def __init__(self) -> None:
        self.failures = 0
        self.next_try = 0.0
        self.confirmed = False  # we completed a handshake with a member there
        self.last_seen = 0.0  # when we last completed one (0: never); saved across restarts


class AddressBook:
    """Addresses learnt from the tracker, peers and ``--connect`` (persistent,
    always redialled), at most ``MAX_KNOWN_ADDRESSES``; an address that cannot
    be reached is tried again after 10 s, 20 s, 40 s ... up to 10 minutes."""

    def __init__(self) -> None:
        self.known: "OrderedDict[Address, AddressInfo]" = OrderedDict()
        self.persistent: Set[Address] = set()  # --connect addresses, always redialled
        self.dialing: Set[Address] = set()
        self.self_addresses: Set[Address] = set()
        self.saved: Set[Address] = set()  # loaded from the data directory: dialled first

    def worked(self, address: Address, now: float) -> None:
        """A handshake with the member at ``address`` completed."""
        info = self.remember(address)
        if info is not None:
            info.confirmed = True
            info.failures = 0
            info.last_seen = now

    def to_save(self) -> List[dict]:
        """The members that worked, most recent first, at most MAX_SAVED_ADDRESSES."""
        seen = sorted(((info.last_seen, a) for a, info in self.known.items() if info.last_seen > 0), reverse=True)
        return [{"host": a[0], "port": a[1], "last_seen": int(t)} for t, a in seen[:MAX_SAVED_ADDRESSES]]

    def load_saved(self, entries: List[Any]) -> int:
        """Addresses saved by an earlier run (entries as ``to_save`` makes them,
        anything else skipped); they are dialled before the others. Returns how many."""
        loaded = 0
        for entry in entries[:MAX_SAVED_ADDRESSES]:
            address = _address_of(entry)
            info = self.remember(address) if address is not None else None
            if address is None or info is None:
                continue
            seen = entry.get("last_seen")
            if isinstance(seen, int) and not isinstance(seen, bool) and seen > 0:
                info.last_seen = float(seen)
            self.saved.add(address)
            loaded += 1
        return loaded

    def remember(self, address: Address) -> Optional[AddressInfo]:
        """The entry of ``address`` (made if new), or None for one of our own addresses."""
        if address in self.self_addresses:
            return None
        info = self.known.get(address)
        if info is None:
            info = self.known[address] = AddressInfo()
            while len(self.known) > MAX_KNOWN_ADDRESSES:
                oldest = next(a for a in self.known if a not in self.persistent)
                del self.known[oldest]
        return info

    def add(self, peers: List[Any]) -> int:
        """Learn listening addresses from a PEERS list; invalid entries are skipped. Returns how many are new."""
        added = 0
        for entry in peers:
            address = _address_of(entry)
            if address is not None and address not in self.known and self.remember(address) is not None:
                added += 1
        return added

    def add_persistent(self, address: Address) -> None:
        """A --connect address: dialled whenever we are not connected to it."""
        self.persistent.add(address)
        self.remember(address)

    def due(self, address: Address, info: AddressInfo, now: float, busy: Set[Address], banned: Callable[[str], bool]) -> bool:
        """Whether to dial ``address`` now (not connected, not dialling, not resting, not banned)."""
        return (
            address not in busy
            and address not in self.dialing
            and address not in self.self_addresses
            and info.next_try <= now
            and not banned(address[0])
        )

    def failed(self, address: Address, now: float) -> None:
        """A dial failed (or the connection closed before the handshake): back off."""
        self.dialing.discard(address)
        info = self.known.get(address)
        if info is not None:
            info.failures += 1
            info.next_try = now + min(600.0, 5.0 * 2 ** min(info.failures, 7))
            info.confirmed = False

    def is_self(self, address: Address) -> None:
        """``address`` turned out to be our own: never dial it again."""
        self.self_addresses.add(address)
        self.known.pop(address, None)
