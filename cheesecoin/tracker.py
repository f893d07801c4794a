# The CheeseCoin tracker: the rendezvous server of docs/protocol.md section 2.
#
# Messages it speaks (JSON lines, docs/protocol.md section 1), request -> reply:
#
#   {"type":"REGISTER","port":P}  (optional "host":H)  -> PEERS
#   {"type":"GET_PEERS"}                                -> PEERS
#   {"type":"UNREGISTER"}                               -> {"type":"OK"}
#   {"type":"PING"}                                     -> {"type":"PONG"}
#
#   PEERS is {"type":"PEERS","peers":[{"host":H,"port":P}, ...]}: at most 10
#   other active members, at random, never the asker, no duplicates.
#   Errors: ERROR bad-json, bad-message, unknown-type, too-long (framing and
#   fields, see cheesecoin.lineproto) and busy (REGISTER when the tracker
#   already holds --max-members members).
#
# Every message counts as activity; a member is removed when its connection
# closes, when it sends UNREGISTER, or when it stays silent past the timeout.
"""The tracker: ``TrackerRegistry`` (pure state), ``TrackerProtocol`` and
``TrackerFactory`` (Twisted). ``cheesecoin.tracker_tap`` builds the service."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable, Optional, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import wire
from .errors import BadMessage, ProtocolError
from .lineproto import BusyProtocol, JsonLineProtocol, is_loopback

DEFAULT_PORT = 24330
DEFAULT_TIMEOUT = 90.0
DEFAULT_MAX_MEMBERS = 10000
DEFAULT_MAX_PER_IP = 256
PEERS_PER_REPLY = 10  # docs/protocol.md section 2: "at most 10"

Address = Tuple[str, int]  # (host, port)


# -- pure state ----------------------------------------------------------------


@dataclass(eq=False)
class Member:
    """One registered member: the connection that registered it and where it listens."""

    conn_key: Hashable
    host: str
    port: int
    last_seen: float
    remote: Optional[str] = None  # the address the registration came from

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def as_peer(self) -> dict:
        """The member as an entry of a ``PEERS`` message."""
        return {"host": self.host, "port": self.port}


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

    def __init__(self, max_members: int = DEFAULT_MAX_MEMBERS, rng: Optional[random.Random] = None) -> None:
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
        self, conn_key: Hashable, host: str, port: int, now: float = 0.0, remote: Optional[str] = None
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
                removals.append(Removal(holder, "replaced by a new registration", len(self._members)))
        member = Member(conn_key, host, port, now, remote)
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


def canonical_ip(text: str) -> Optional[str]:
    """``text`` as an IP address in its canonical form (an IPv4-mapped IPv6
    address as the IPv4 one), or None if it is not an IP address."""
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


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
            raise BadMessage(f"field 'host' {host[:60]!r} is not an IP address in its usual form nor a DNS name")
        return host.lower()
    if host != ip:
        raise BadMessage(f"field 'host' must be the address in its canonical form, {ip}, not {host[:60]!r}")
    if remote is not None and ip != remote and not is_loopback(remote):
        raise BadMessage(f"field 'host' {ip} is not the address this connection comes from")
    return ip


# -- Twisted -------------------------------------------------------------------


class TrackerProtocol(JsonLineProtocol):
    """One connection to the tracker (a member, or a tool asking for peers)."""

    factory: "TrackerFactory"
    ip: Optional[str] = None  # the address counted against the per-IP limit

    def connectionMade(self) -> None:
        self.clock = self.factory.clock
        self.start_producing()  # stop reading from a peer that does not read its replies

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.closing = True
        self.factory.connection_lost(self)

    def line_received(self, line: bytes) -> None:
        self.factory.touch(self)
        super().line_received(line)

    def peers_message(self) -> dict:
        peers = self.factory.registry.sample(excluding=self, k=PEERS_PER_REPLY, rng=self.factory.rng)
        return {"type": "PEERS", "peers": [member.as_peer() for member in peers]}

    def msg_REGISTER(self, msg: dict) -> None:
        port = wire.get_port(msg, "port")
        remote = canonical_ip(self.peer_host() or "")
        if msg.get("host") is None:
            if remote is None:
                raise ProtocolError("bad-message", "field 'host' is missing and the address is unknown")
            host = remote
        else:
            host = registrable_host(wire.get_host(msg, "host"), remote)
        self.factory.register(self, host, port, remote)
        self.reply(msg, self.peers_message())

    def msg_GET_PEERS(self, msg: dict) -> None:
        self.reply(msg, self.peers_message())

    def msg_UNREGISTER(self, msg: dict) -> None:
        self.factory.unregister(self, "unregistered")
        self.reply(msg, {"type": "OK"})

    def msg_PING(self, msg: dict) -> None:
        self.reply(msg, {"type": "PONG"})


class TrackerFactory(Factory):
    """The tracker: registry, clock, random source, timeout and connection limits.

    ``clock`` (an ``IReactorTime``) and ``rng`` are injectable for tests;
    ``sweep`` is meant to run every ``sweep_interval`` seconds.
    """

    protocol = TrackerProtocol
    noisy = False
    log = Logger()

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_per_ip: int = DEFAULT_MAX_PER_IP,
        max_connections: Optional[int] = None,
        clock: Optional[IReactorTime] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        self.registry = TrackerRegistry(max_members, self.rng)
        self.timeout = timeout
        self.max_per_ip = max_per_ip
        self.max_connections = max_connections if max_connections is not None else max_members + 1024
        self.connection_count = 0
        self.per_ip: Counter[str] = Counter()
        # Every open connection, by last activity, oldest first.
        self._activity: OrderedDict[TrackerProtocol, float] = OrderedDict()
        self.refused = 0
        self.refused_registrations = 0

    @property
    def sweep_interval(self) -> float:
        """How often ``sweep`` should run: often enough to remove silent members promptly."""
        return max(0.05, min(1.0, self.timeout / 4))

    def listening(self, port: Any = None) -> None:
        """Called once the listening port is open."""
        if port is not None:
            host = port.getHost()
            self.log.info(
                "Tracker listening on {host}:{port} (timeout {timeout}s, at most {max_members} members, "
                "{max_per_ip} connections per address)",
                host=host.host,
                port=host.port,
                timeout=self.timeout,
                max_members=self.registry.max_members,
                max_per_ip=self.max_per_ip,
            )
        self.log.info("Tracker waiting for new connection.")

    # -- connections ---------------------------------------------------------

    def buildProtocol(self, addr: Any) -> Optional[Protocol]:
        ip = getattr(addr, "host", "?")
        if self.connection_count >= self.max_connections:
            return self._refuse(ip, f"the tracker has {self.connection_count} connections open")
        # Many members and tools share a loopback address: per-address limits never apply to it.
        if self.per_ip[ip] >= self.max_per_ip and not is_loopback(ip):
            return self._refuse(ip, f"{self.per_ip[ip]} connections from {ip} already")
        proto = super().buildProtocol(addr)
        proto.ip = ip
        self.connection_count += 1
        self.per_ip[ip] += 1
        self._activity[proto] = self.clock.seconds()
        return proto

    def _refuse(self, ip: str, why: str) -> Protocol:
        """A connection turned away for a limit: it is told why (ERROR busy), then closed."""
        self.refused += 1
        # One line per refusal would let a flood fill the log: log the first of each 100.
        if self.refused % 100 == 1:
            self.log.warn(
                "Refused a connection from {ip}: {why} ({refused} refused so far)",
                ip=ip,
                why=why,
                refused=self.refused,
            )
        return BusyProtocol(why)

    def connection_lost(self, proto: TrackerProtocol) -> None:
        """Forget a closed connection and its registration."""
        self.unregister(proto, "disconnected")
        self._activity.pop(proto, None)
        ip, proto.ip = proto.ip, None
        if ip is not None:
            self.connection_count -= 1
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

    def touch(self, proto: TrackerProtocol) -> None:
        """A message arrived on ``proto``: it and its member are alive."""
        now = self.clock.seconds()
        if proto in self._activity:
            self._activity[proto] = now
            self._activity.move_to_end(proto)
        self.registry.touch(proto, now)

    def sweep(self) -> None:
        """Remove members silent past the timeout and drop silent connections."""
        now = self.clock.seconds()
        expired = self.registry.expire(now, self.timeout)
        for i, member in enumerate(expired):  # the count as if removed one by one
            self._log_removed(member, "timeout", len(self.registry) + len(expired) - 1 - i)
        while self._activity:
            proto, seen = next(iter(self._activity.items()))
            if now - seen <= self.timeout:
                break
            del self._activity[proto]
            proto.abort()

    # -- members -------------------------------------------------------------

    def register(self, proto: TrackerProtocol, host: str, port: int, remote: Optional[str] = None) -> Member:
        """Register ``proto``'s member (from ``remote``); ``ProtocolError("busy")``
        when full or when (host, port) is registered from another address."""
        try:
            member, removals = self.registry.register(proto, host, port, self.clock.seconds(), remote)
        except ProtocolError:
            self.refused_registrations += 1
            raise
        for removal in removals:
            self._log_removed(removal.member, removal.reason, removal.active)
        self.log.info(
            "Registered member {host}:{port} ({active} active)",
            host=host,
            port=port,
            active=len(self.registry),
        )
        return member

    def unregister(self, proto: TrackerProtocol, reason: str) -> Optional[Member]:
        member = self.registry.unregister(proto)
        if member is not None:
            self._log_removed(member, reason, len(self.registry))
        return member

    def _log_removed(self, member: Member, reason: str, active: int) -> None:
        self.log.info(
            "Removed member {host}:{port} ({active} active): {reason}",
            host=member.host,
            port=member.port,
            active=active,
            reason=reason,
        )
