"""The tracker's state, pure (no Twisted): ``TrackerRegistry`` and the rules
for the addresses members register (docs/protocol.md section 2)."""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Optional

from cheesecoin.core.errors import BadMessage, ProtocolError
from cheesecoin.util.addresses import Address, canonical_ip, is_loopback
from cheesecoin.wire.limits import PEERS_PER_REPLY

DEFAULT_MAX_MEMBERS = 10000


@dataclass(eq=False)
class Member:
    """One registered member: the connection that registered it and where it listens."""

    conn_key: Hashable
    host: str
    port: int
    last_seen: float
    remote: Optional[str] = None  # the address the registration came from
    node_id: Optional[str] = None  # the REGISTER's node_id (section 2), listed with the member

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def as_peer(self) -> dict:
        """The member as an entry of a ``PEERS`` message."""
        if self.node_id is None:
            return {"host": self.host, "port": self.port}
        return {"host": self.host, "port": self.port, "node_id": self.node_id}


@dataclass
class Removal:
    """A member taken out of the registry, why, and how many members remain."""

    member: Member
    reason: str
    active: int


class TrackerRegistry:
    """The active members, by connection and by (host, port); no Twisted here.

    Members are kept in a list with an index map so that removal is O(1)
    (swap with the last one) and ``sample`` is O(k); ``_by_activity`` keeps
    them in order of last activity so that ``expire`` costs O(expired).
    """

    def __init__(
        self, max_members: int = DEFAULT_MAX_MEMBERS, rng: Optional[random.Random] = None
    ) -> None:
        self.max_members = max_members
        self.rng = rng if rng is not None else random.Random()
        self._members: list[Member] = []
        self._position: dict[Hashable, int] = {}  # conn_key -> index in _members
        self._by_address: dict[Address, Member] = {}
        self._by_activity: OrderedDict[Hashable, None] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, conn_key: Hashable) -> bool:
        return conn_key in self._position

    def get(self, conn_key: Hashable) -> Optional[Member]:
        """The member registered by ``conn_key``, if any."""
        index = self._position.get(conn_key)
        return None if index is None else self._members[index]

    def members(self) -> list[Member]:
        """A copy of the active members (in no particular order)."""
        return list(self._members)

    def register(
        self,
        conn_key: Hashable,
        host: str,
        port: int,
        now: float = 0.0,
        remote: Optional[str] = None,
        node_id: Optional[str] = None,
    ) -> tuple[Member, list[Removal]]:
        """Register ``conn_key`` as the member listening at (host, port).

        A registration of the same (host, port) by another connection is
        replaced only when it comes from the same ``remote`` address (a
        member reconnecting); from another one it is refused with
        ``ProtocolError("busy")`` and the first stays. A connection already
        registered elsewhere moves. Returns the new member and the
        registrations it displaced. Raises ``ProtocolError("busy")`` too when
        a new member would pass ``max_members``.
        """
        address = (host, port)
        current = self.get(conn_key)
        holder = self._by_address.get(address)
        if holder is not None and holder.conn_key != conn_key and holder.remote != remote:
            raise ProtocolError("busy", f"{host}:{port} is registered from another address")
        if current is None and holder is None and len(self._members) >= self.max_members:
            raise ProtocolError("busy", f"the tracker already has {self.max_members} members")
        removals: list[Removal] = []
        if current is not None and current is not holder:
            self._remove(conn_key)
            removals.append(Removal(current, f"moved to {host}:{port}", len(self._members)))
        if holder is not None:
            self._remove(holder.conn_key)
            if holder.conn_key != conn_key:
                removals.append(
                    Removal(holder, "replaced by a new registration", len(self._members))
                )
        member = Member(conn_key, host, port, now, remote, node_id)
        self._position[conn_key] = len(self._members)
        self._members.append(member)
        self._by_address[address] = member
        self._by_activity[conn_key] = None
        return member, removals

    def unregister(self, conn_key: Hashable) -> Optional[Member]:
        """Remove the registration of ``conn_key``; returns it, or None."""
        if conn_key not in self._position:
            return None
        return self._remove(conn_key)

    def _remove(self, conn_key: Hashable) -> Member:
        index = self._position.pop(conn_key)
        member = self._members[index]
        last = self._members.pop()
        if last is not member:
            self._members[index] = last
            self._position[last.conn_key] = index
        del self._by_address[member.address]
        del self._by_activity[conn_key]
        return member

    def touch(self, conn_key: Hashable, now: float) -> None:
        """Note activity from ``conn_key`` (nothing if it is not registered)."""
        index = self._position.get(conn_key)
        if index is not None:
            self._members[index].last_seen = now
            self._by_activity.move_to_end(conn_key)

    def expire(self, now: float, timeout: float) -> list[Member]:
        """Remove and return the members silent for more than ``timeout``."""
        removed = []
        while self._by_activity:
            conn_key = next(iter(self._by_activity))
            member = self._members[self._position[conn_key]]
            if now - member.last_seen <= timeout:
                break
            removed.append(self._remove(conn_key))
        return removed

    def sample(
        self,
        excluding: Hashable = None,
        k: int = PEERS_PER_REPLY,
        rng: Optional[random.Random] = None,
        exclude_address: Optional[Address] = None,
    ) -> list[Member]:
        """At most ``k`` other members at random, in random order, no duplicates.

        The member registered by connection ``excluding`` and the one at
        ``exclude_address`` are never included. O(k): indices are drawn
        from the range of the others and mapped around the excluded ones.
        """
        rng = rng if rng is not None else self.rng
        skip = set()
        if excluding is not None and excluding in self._position:
            skip.add(self._position[excluding])
        if exclude_address is not None and exclude_address in self._by_address:
            skip.add(self._position[self._by_address[exclude_address].conn_key])
        skipped = sorted(skip)
        others = len(self._members) - len(skipped)
        picked = []
        for index in rng.sample(range(others), max(0, min(k, others))):
            for s in skipped:
                if index >= s:
                    index += 1
            picked.append(self._members[index])
        return picked


def _looks_numeric(name: str) -> bool:
    """A name that is an odd spelling of an address, not a DNS name: a colon,
    a last label of digits (no top-level domain is numeric) or a hex label."""
    labels = name.rstrip(".").split(".")
    return ":" in name or labels[-1].isdigit() or any(label[:2].lower() == "0x" for label in labels)


def registrable_host(host: str, remote: Optional[str]) -> str:
    """The ``host`` of a REGISTER as the tracker keeps it, or BadMessage.

    docs/protocol.md section 2: an IP address in its canonical form, which
    must be the connection's own address unless that is loopback; odd
    spellings of addresses refused; a DNS name lowercased.
    """
    ip = canonical_ip(host)
    if ip is None:
        if _looks_numeric(host):
            raise BadMessage(
                f"field 'host' {host[:60]!r} is not an IP address in its usual form nor a DNS name"
            )
        return host.lower()
    if host != ip:
        raise BadMessage(
            f"field 'host' must be the address in its canonical form, {ip}, not {host[:60]!r}"
        )
    if remote is not None and ip != remote and not is_loopback(remote):
        raise BadMessage(f"field 'host' {ip} is not the address this connection comes from")
    return ip
