"""The address book: what the peer manager knows of listening members, which of
them to dial, which to tell others about, and what to keep across restarts.

The tables (``cheesecoin.p2p.addrbook``) keep addresses heard of ("new")
apart from those we dialled and that worked ("tried"), bucketed by network
group so that one host or /16 cannot fill the book. An inbound peer's own
address is at most "new". Outbound connections keep to distinct network
groups (loopback exempt); the outbound peers of the last run ("anchors")
are dialled first after a restart. An address that cannot be reached is
tried again after 10 s, 20 s, 40 s ... up to 10 minutes.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from cheesecoin.core.errors import ProtocolError
from cheesecoin.p2p.addrbook import AddressTables, AddrInfo, address_group, network_group
from cheesecoin.util.addresses import Address, is_loopback, listable_host
from cheesecoin.wire import codec as wire

MAX_SAVED_ADDRESSES = 1024  # entries of peers.json: anchors, then tried, then new
MAX_ANCHORS = 4  # outbound peers saved to be dialled first at the next start
TRIED_SHARE = (
    0.5  # the chance that an outbound slot goes to a tried address (when both tables can fill it)
)
REPLY_NEW_PER_SOURCE = 2  # new addresses of one source group in one PEERS reply
MAX_LAST_SEEN = 2**53  # a saved time beyond this is not a time

REPLY_CACHE_SECONDS = 5.0  # a PEERS reply's sample is drawn at most this often

__all__ = ["Address", "AddrInfo", "AddressBook", "MAX_ANCHORS", "MAX_SAVED_ADDRESSES"]


def _address_of(entry: Any) -> Optional[Address]:
    """(host, port) of a {"host", "port"} entry, or None if it is not a valid one."""
    if not isinstance(entry, dict):
        return None
    try:
        port = wire.get_port(entry, "port")
        host = listable_host(wire.get_host(entry, "host"))
    except ProtocolError:
        return None
    return (host, port) if host is not None and port is not None else None


def _source_of(entry: dict, address: Address) -> str:
    """The saved source of an entry; an old file's entries have none: they count as their own."""
    try:
        return wire.get_host(entry, "source")
    except ProtocolError:
        return address[0]


class AddressBook:
    """The new and tried tables, plus the --connect addresses (``persistent``,
    always redialled), the dials under way, our own addresses, the anchors
    to dial first and the outbound peers connected now. ``rng`` picks the
    tables' hash key and every random choice (inject one for reproducible tests)."""

    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self.rng = rng or random.Random()
        self.tables = AddressTables(self.rng)
        self.persistent: Set[Address] = set()
        # (drawn at, count, sample) of the last PEERS reply sample
        self._reply_cache: Optional[Tuple[float, int, List[dict]]] = None
        self.dialing: Set[Address] = set()  # dialled, not yet connected
        self.connecting: Set[Address] = set()  # connected outbound, handshake not done
        self.outbound: Dict[Address, None] = {}  # outbound peers now, oldest first
        self.self_addresses: Set[Address] = set()
        self.anchors: List[Address] = []  # loaded from the data directory: dialled first

    @property
    def known(self) -> Dict[Address, AddrInfo]:
        """Every address we hold, new, tried or --connect."""
        return self.tables.entries

    # -- learning addresses -------------------------------------------------------------

    def add(self, peers: List[Any], source: str = "peer", now: float = 0.0) -> int:
        """Learn listening addresses from a PEERS list heard from ``source`` (the
        peer's host, or "tracker"); invalid entries are skipped. Returns how many are new."""
        added = 0
        for entry in peers:
            address = _address_of(entry)
            if address is None or address in self.self_addresses or address in self.known:
                continue
            if self.tables.add_new(address, source, now) is not None:
                added += 1
        return added

    def remember(self, address: Address) -> Optional[AddrInfo]:
        """The entry of ``address`` (made for a --connect address), or None for one
        of our own addresses or one the book does not hold."""
        if address in self.self_addresses:
            return None
        info = self.known.get(address)
        if info is None and address in self.persistent:
            info = self.known[address] = AddrInfo("connect")
        return info

    def add_persistent(self, address: Address) -> None:
        """A --connect address: dialled whenever we are not connected to it."""
        self.persistent.add(address)
        self.remember(address)

    # -- connections ------------------------------------------------------------------------

    def opened(self, address: Address) -> None:
        """A dial of ``address`` connected; the handshake follows."""
        self.dialing.discard(address)
        self.connecting.add(address)

    def connected(
        self,
        outbound: bool,
        dial_address: Optional[Address],
        claimed: Optional[Address],
        now: float,
    ) -> None:
        """A handshake completed. Only an address we dialled becomes tried; what an
        inbound peer says of itself (``claimed``: its host and HELLO port) is at most new."""
        if outbound and dial_address is not None:
            self.connecting.discard(dial_address)
            if dial_address not in self.self_addresses:
                self.tables.mark_tried(dial_address, dial_address[0], now)
                self.outbound[dial_address] = None
            if dial_address in self.anchors:
                self.anchors.remove(
                    dial_address
                )  # dialled first once; now saved as an outbound peer
        elif claimed is not None and claimed not in self.self_addresses:
            self.tables.add_new(claimed, claimed[0], now)

    def lost(self, address: Address, ready: bool, now: float) -> None:
        """The connection we dialled to ``address`` closed (before the handshake: not ``ready``)."""
        self.connecting.discard(address)
        self.outbound.pop(address, None)
        if not ready:
            self.failed(address, now)
            return
        info = self.known.get(address)
        if info is not None and info.bucket < 0 and address not in self.persistent:
            del self.known[address]  # it worked, but neither table had room for it

    def failed(self, address: Address, now: float) -> None:
        """A dial failed (or the connection closed before the handshake): back off."""
        self.dialing.discard(address)
        self.connecting.discard(address)
        info = self.known.get(address)
        if info is not None:
            info.failures += 1
            info.next_try = now + min(600.0, 5.0 * 2 ** min(info.failures, 7))
            if info.bucket < 0 and address not in self.persistent:
                del self.known[address]  # held only while we dialled it
        if address in self.anchors:
            self.anchors.remove(address)

    def is_self(self, address: Address) -> None:
        """``address`` turned out to be our own: never dial it again."""
        self.self_addresses.add(address)
        self.tables.remove(address)
        self.outbound.pop(address, None)

    # -- dialling ----------------------------------------------------------------------------

    def due(
        self,
        address: Address,
        info: AddrInfo,
        now: float,
        busy: Set[Address],
        banned: Callable[[str], bool],
    ) -> bool:
        """Whether to dial ``address`` now (not connected, dialling, resting or banned)."""
        return (
            address not in busy
            and address not in self.dialing
            and address not in self.self_addresses
            and info.next_try <= now
            and not banned(address[0])
        )

    def select(
        self, want: int, now: float, busy: Set[Address], banned: Callable[[str], bool]
    ) -> List[Address]:
        """Up to ``want`` addresses to dial: the anchors first, then tried or new at
        random, never two in one network group (loopback addresses exempt) and never
        one in the group of an outbound connection or dial."""
        groups = {address_group(a) for a in (*self.outbound, *self.dialing, *self.connecting)}

        def usable(address: Address) -> bool:
            info = self.known.get(address)
            if info is None or not self.due(address, info, now, busy, banned):
                return False
            return is_loopback(address[0]) or address_group(address) not in groups

        picked: List[Address] = []

        def take(address: Address) -> None:
            picked.append(address)
            if not is_loopback(address[0]):
                groups.add(address_group(address))

        for address in list(self.anchors):
            if len(picked) < want and usable(address):
                take(address)
        pools = [self._shuffled(True), self._shuffled(False)]
        while len(picked) < want and (pools[0] or pools[1]):
            tried = bool(pools[0]) and (not pools[1] or self.rng.random() < TRIED_SHARE)
            address = pools[0 if tried else 1].pop()
            if usable(address):
                take(address)
        return picked

    def _shuffled(self, tried: bool) -> List[Address]:
        addresses = list(self.tables.addresses(tried))
        self.rng.shuffle(addresses)
        return addresses

    # -- what we tell others -------------------------------------------------------------

    def reply_sample(self, count: int, exclude: Optional[Address], now: float) -> List[dict]:
        """``sample`` for a PEERS reply, drawn at most once every REPLY_CACHE_SECONDS
        (drawing shuffles both tables: a GET_PEERS must not cost that each time)."""
        cached = self._reply_cache
        if cached is None or cached[1] != count or not 0 <= now - cached[0] < REPLY_CACHE_SECONDS:
            cached = self._reply_cache = (now, count, self.sample(count + 1))
        return [e for e in cached[2] if (e["host"], e["port"]) != exclude][:count]

    def sample(self, count: int, exclude: Optional[Address] = None) -> List[dict]:
        """Up to ``count`` addresses for a PEERS reply: tried ones that work first
        (at most two thirds of the reply while new ones are left), then new ones,
        at most REPLY_NEW_PER_SOURCE from one source group and none already failing."""

        def fit(address: Address) -> bool:
            info = self.known[address]
            return address != exclude and address not in self.self_addresses and info.failures == 0

        tried = [a for a in self._shuffled(True) if fit(a)][:count]
        new: List[Address] = []
        per_source: Dict[str, int] = {}
        for address in self._shuffled(False):
            if len(new) >= count:
                break
            group = network_group(self.known[address].source)
            if fit(address) and per_source.get(group, 0) < REPLY_NEW_PER_SOURCE:
                per_source[group] = per_source.get(group, 0) + 1
                new.append(address)
        first = max(count * 2 // 3, count - len(new))
        picked = tried[:first]
        picked += new[: count - len(picked)]
        picked += tried[first:][: count - len(picked)]  # fewer new ones than room for them
        return [{"host": h, "port": p} for h, p in picked]

    # -- saving ------------------------------------------------------------------------------

    def to_save(self) -> List[dict]:
        """The entries of ``peers.json``, at most MAX_SAVED_ADDRESSES: the anchors (the
        outbound peers now, or those loaded if none is connected yet), then tried
        addresses that worked most recently, then new ones with their source."""
        anchors = list(self.outbound)[-MAX_ANCHORS:] or self.anchors[:MAX_ANCHORS]
        out: List[dict] = []
        for address in anchors:
            info = self.known.get(address)
            if info is not None and info.tried:
                out.append(
                    {
                        "host": address[0],
                        "port": address[1],
                        "tried": True,
                        "anchor": True,
                        "last_seen": int(info.last_seen),
                    }
                )
        done = set(anchors)
        tried = sorted(self.tables.addresses(True), key=lambda a: -self.known[a].last_seen)
        for address in tried:
            if address not in done:
                out.append(
                    {
                        "host": address[0],
                        "port": address[1],
                        "tried": True,
                        "last_seen": int(self.known[address].last_seen),
                    }
                )
        for address in self.tables.addresses(False):
            info = self.known[address]
            if not info.terrible():
                out.append({"host": address[0], "port": address[1], "source": info.source})
        return out[:MAX_SAVED_ADDRESSES]

    def load_saved(self, entries: List[Any]) -> int:
        """Entries saved by an earlier run (as ``to_save`` makes them; anything else
        is skipped). Tried ones go back to tried, anchors are dialled first; an entry
        of an old file (no "tried", no "source") is only heard of, from itself.
        Returns how many were loaded."""
        loaded = 0
        for entry in entries[:MAX_SAVED_ADDRESSES]:
            address = _address_of(entry)
            if address is None or address in self.self_addresses:
                continue
            seen = entry.get("last_seen")
            seen = (
                float(seen)
                if isinstance(seen, int) and not isinstance(seen, bool) and 0 < seen < MAX_LAST_SEEN
                else 0.0
            )
            if entry.get("tried") is True and seen > 0:
                info = self.tables.mark_tried(address, address[0], seen)
                if entry.get("anchor") is True and info.tried and len(self.anchors) < MAX_ANCHORS:
                    self.anchors.append(address)
            elif self.tables.add_new(address, _source_of(entry, address), seen) is None:
                continue
            loaded += 1
        return loaded
