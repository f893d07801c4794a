"""The bucketed address tables, after Bitcoin Core's addrman (pure logic, no Twisted).

Two tables: *new* holds addresses we heard of (from the tracker, a PEERS
reply, an inbound peer's own HELLO), *tried* the ones we dialled and
completed a handshake with. Each table is a fixed number of small buckets:

- a new address goes to the bucket picked by a keyed hash of the network
  group of its *source* (who told us) and of its own group, so one source
  group reaches at most ``NEW_BUCKETS_PER_SOURCE_GROUP`` buckets, 128 of
  the 2,048 new slots, however many addresses it makes up;
- a tried address goes to a bucket picked by its own group, at most
  ``TRIED_BUCKETS_PER_GROUP`` buckets (64 of the 512 tried slots) a group;
- a full bucket takes a newcomer only in place of a *terrible* entry
  (dialled and failed again and again); a tried entry that still works is
  never pushed out, neither by a new address nor by another tried one.

The hash key comes from the random source given, so tests are reproducible.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from functools import lru_cache
from typing import Dict, Iterator, List, Optional

from cheesecoin.util.addresses import Address, canonical_ip

NEW_BUCKETS = 64
TRIED_BUCKETS = 16
BUCKET_SIZE = 32
NEW_BUCKETS_PER_SOURCE_GROUP = 4  # one source group: at most 4 * 32 = 128 new entries
TRIED_BUCKETS_PER_GROUP = 2  # one address group: at most 2 * 32 = 64 tried entries
MAX_NEW = NEW_BUCKETS * BUCKET_SIZE
MAX_TRIED = TRIED_BUCKETS * BUCKET_SIZE
NEVER_WORKED_FAILURES = 3  # an address that never worked is terrible after this many failed dials
MAX_FAILURES = 10  # any address is terrible after this many failed dials in a row


@lru_cache(maxsize=8192)  # parsing addresses is slow; the cache is bounded
def network_group(host: str, port: Optional[int] = None) -> str:
    """The network group of ``host``: /16 for a public IPv4 address, /32 for a
    public IPv6 one, the address itself for a private or link-local one, the
    name itself for a host name. Loopback addresses (tests and local nets
    share 127/8) are the address itself, and with ``port`` the address and
    port: on loopback a member is told apart by its port."""
    ip_text = canonical_ip(host)
    if ip_text is None:  # a name: by its last two labels (a wildcard domain is one group)
        return "name:" + ".".join(host.lower().rstrip(".").split(".")[-2:])
    ip = ipaddress.ip_address(ip_text)
    if ip.is_loopback:
        return f"lo:{ip_text}" if port is None else f"lo:{ip_text}:{port}"
    if not ip.is_global:
        return "local:" + ip_text
    if ip.version == 4:
        return "v4:" + ".".join(ip_text.split(".")[:2])
    return "v6:" + str(ipaddress.ip_network(f"{ip_text}/32", strict=False).network_address)


def address_group(address: Address) -> str:
    """The network group of a listening address (see ``network_group``)."""
    return network_group(address[0], address[1])


class AddrInfo:
    """What we know of one listening address."""

    __slots__ = ("source", "tried", "bucket", "failures", "next_try", "last_seen", "heard")

    def __init__(self, source: str, heard: float = 0.0) -> None:
        self.source = (
            source  # who told us (a host, "tracker", "connect"); the address itself if it said so
        )
        self.tried = False  # we dialled it and completed a handshake
        self.bucket = -1  # its bucket in its table (-1: in none, e.g. a --connect address)
        self.failures = 0  # failed dials in a row
        self.next_try = 0.0  # not dialled before this time
        self.last_seen = 0.0  # when a handshake we dialled last completed (0: never)
        self.heard = heard  # when we first heard of it

    def terrible(self) -> bool:
        """Dialled and failed too often: its slot may go to a newcomer."""
        if self.last_seen <= 0:
            return self.failures >= NEVER_WORKED_FAILURES
        return self.failures >= MAX_FAILURES


class AddressTables:
    """The new and tried tables; ``entries`` holds every address of both (and
    the unbucketed ones the book keeps itself, such as --connect addresses)."""

    def __init__(self, rng: random.Random) -> None:
        self.key = rng.getrandbits(128).to_bytes(16, "big")
        self.entries: Dict[Address, AddrInfo] = {}
        self.new: List[Dict[Address, None]] = [{} for _ in range(NEW_BUCKETS)]
        self.tried: List[Dict[Address, None]] = [{} for _ in range(TRIED_BUCKETS)]

    def _hash(self, *parts: str) -> int:
        digest = hashlib.sha256(self.key + "\x00".join(parts).encode("utf-8", "replace")).digest()
        return int.from_bytes(digest[:8], "big")

    def new_bucket(self, address: Address, source_group: str) -> int:
        """The new bucket of ``address`` heard of from ``source_group``."""
        inner = (
            self._hash("new", address_group(address), source_group) % NEW_BUCKETS_PER_SOURCE_GROUP
        )
        return self._hash("new-bucket", source_group, str(inner)) % NEW_BUCKETS

    def tried_bucket(self, address: Address) -> int:
        """The tried bucket of ``address``."""
        inner = self._hash("tried", address[0], str(address[1])) % TRIED_BUCKETS_PER_GROUP
        return self._hash("tried-bucket", address_group(address), str(inner)) % TRIED_BUCKETS

    def count(self, tried: bool) -> int:
        return sum(len(b) for b in (self.tried if tried else self.new))

    def addresses(self, tried: bool) -> Iterator[Address]:
        """Every address of one table (bucket by bucket)."""
        for bucket in self.tried if tried else self.new:
            yield from bucket

    def add_new(self, address: Address, source: str, now: float) -> Optional[AddrInfo]:
        """Put a heard-of address in its new bucket. Returns its entry (the old
        one if it was known), or None if its bucket is full of useful entries."""
        info = self.entries.get(address)
        if info is not None and info.bucket >= 0:
            return info  # known already (new or tried): the first source keeps it
        b = self.new_bucket(address, network_group(source))
        if not self._make_room(self.new[b]):
            return None
        if info is None:
            info = self.entries[address] = AddrInfo(source, now)
        else:
            info.source = source
        info.bucket, info.tried = b, False
        self.new[b][address] = None
        return info

    def mark_tried(self, address: Address, source: str, now: float) -> AddrInfo:
        """We dialled ``address`` and the handshake completed: it moves to tried,
        unless its tried bucket is full of entries that still work (it stays new)."""
        info = self.entries.get(address)
        if info is None:
            info = self.entries[address] = AddrInfo(source, now)
        info.failures, info.last_seen = 0, now
        if info.tried:
            return info
        b = self.tried_bucket(address)
        bucket = self.tried[b]
        if len(bucket) >= BUCKET_SIZE:
            victim = self._failing(bucket)
            if victim is None:
                if info.bucket < 0:
                    self.add_new(address, source, now)
                return info  # every entry there still works: none is pushed out
            self._demote(victim, now)
        self._unplace(address, info)
        info.bucket, info.tried = b, True
        bucket[address] = None
        return info

    def remove(self, address: Address) -> None:
        """Forget ``address`` altogether."""
        info = self.entries.pop(address, None)
        if info is not None:
            self._unplace(address, info)

    def _unplace(self, address: Address, info: AddrInfo) -> None:
        if info.bucket >= 0:
            (self.tried if info.tried else self.new)[info.bucket].pop(address, None)
        info.bucket, info.tried = -1, False

    def _failing(self, bucket: Dict[Address, None]) -> Optional[Address]:
        """The tried entry of a full bucket whose dials fail longest, or None if all work."""
        failing = [a for a in bucket if self.entries[a].failures > 0]
        if not failing:
            return None
        return min(failing, key=lambda a: (-self.entries[a].failures, self.entries[a].last_seen, a))

    def _demote(self, address: Address, now: float) -> None:
        """A failing tried entry gives its slot up: back to new (dropped if there is no room)."""
        info = self.entries[address]
        self._unplace(address, info)
        if self.add_new(address, info.source, now) is None:
            del self.entries[address]

    def _make_room(self, bucket: Dict[Address, None]) -> bool:
        """Whether ``bucket`` (of new) has room, evicting a terrible entry if it must."""
        if len(bucket) < BUCKET_SIZE:
            return True
        for address in bucket:
            if self.entries[address].terrible():
                self.remove(address)
                return True
        return False
