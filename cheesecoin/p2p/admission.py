"""Who may connect: bans by IP, per-address limits, and eviction of the least
useful inbound peer for a newcomer when ``max_inbound`` are open.

``BanList`` bans a misbehaving peer's IP for ``ban_seconds`` (never a
loopback one: it is closed and its address not redialled for the ban time);
``Admission`` decides, for each inbound connection, between a new
``MemberProtocol`` and a ``BusyProtocol`` that refuses it (ERROR busy, then
closed), and counts the connections of each address.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from cheesecoin.p2p.interfaces import ConnectionPool
from cheesecoin.p2p.peers import AddressBook
from cheesecoin.util.addresses import is_loopback
from cheesecoin.wire.lineproto import BusyProtocol

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

BAN_SECONDS = 3600.0
# Eviction (a new inbound connection when max_inbound are open): these are never evicted.
EVICT_PROTECT_DELIVERERS = 4  # the inbound peers that most recently gave us a new cheese
EVICT_PROTECT_OLDEST = 4  # the longest-connected handshaken inbound peers


class BanList:
    """Banned IPs (host -> until when), and the ban itself."""

    def __init__(
        self,
        clock: IReactorTime,
        log: Logger,
        pool: ConnectionPool,
        addresses: AddressBook,
        ban_seconds: float = BAN_SECONDS,
    ) -> None:
        self.clock = clock
        self.log = log
        self.pool = pool
        self.addresses = addresses
        self.ban_seconds = ban_seconds
        self.banned: Dict[str, float] = {}

    def is_banned(self, host: str) -> bool:
        until = self.banned.get(host)
        if until is None:
            return False
        if until <= self.clock.seconds():
            del self.banned[host]
            return False
        return True

    def ban(self, proto: MemberProtocol, why: str) -> None:
        """Ban the peer's IP for a while (a loopback peer is only disconnected)."""
        host = proto.peer_host() or "?"
        if is_loopback(host):
            self.log.warn("Closing {peer} for misbehaving: {why}", peer=proto.label(), why=why)
            proto.close()
            # Many members share a loopback address: not banned, but this member
            # (its address) is not redialled for the ban time.
            for address in (proto.dial_address, proto.listening_address):
                info = self.addresses.known.get(address) if address is not None else None
                if info is not None:
                    info.next_try = max(info.next_try, self.clock.seconds() + self.ban_seconds)
            return
        self.banned[host] = self.clock.seconds() + self.ban_seconds
        self.log.warn(
            "Banning {host} for {secs:.0f} s: {why}", host=host, secs=self.ban_seconds, why=why
        )
        for other in list(self.pool.connections):
            if other.peer_host() == host:
                other.close()

    def forget_ended(self) -> None:
        """Forget the bans whose time is over."""
        now = self.clock.seconds()
        for host in [h for h, until in self.banned.items() if until <= now]:
            del self.banned[host]


class Admission:
    """Per-address counts and limits of member connections, and which inbound
    connection is turned away or evicted for a newcomer."""

    def __init__(
        self,
        log: Logger,
        pool: ConnectionPool,
        bans: BanList,
        max_inbound: int,
        max_per_ip: int,
    ) -> None:
        self.log = log
        self.pool = pool
        self.bans = bans
        self.max_inbound = max_inbound
        self.max_per_ip = max_per_ip
        self.per_ip: Counter[str] = Counter()
        self.inbound_count = 0
        self.refused = 0

    def admit(self, addr: Optional[IAddress], build: Callable[[], MemberProtocol]) -> Protocol:
        """The protocol of a new inbound connection (``build()``), or a
        BusyProtocol that refuses it."""
        host = getattr(addr, "host", None) or "?"  # an IAddress without a host (a UNIX socket)
        if self.bans.is_banned(host):
            return self._refuse(host, "the address is banned")
        # Many members and tools share a loopback address: per-address limits never apply to it.
        if self.per_ip[host] >= self.max_per_ip and not is_loopback(host):
            return self._refuse(host, f"{self.per_ip[host]} connections from {host} already")
        inbound = [p for p in self.pool.connections if not p.outbound and not p.closing]
        if len(inbound) >= self.max_inbound:
            victim = self.eviction_candidate(inbound)
            if victim is None:
                return self._refuse(
                    host, f"{len(inbound)} inbound connections already, none evictable"
                )
            self.log.info(
                "Evicting inbound peer {peer} for a new connection from {host}",
                peer=victim.label(),
                host=host,
            )
            victim.abort()
        return build()

    def eviction_candidate(self, inbound: List[MemberProtocol]) -> Optional[MemberProtocol]:
        """The inbound peer to drop for a newcomer when max_inbound are open, or None.

        Protected: the EVICT_PROTECT_DELIVERERS peers that most recently gave us
        a new cheese, the EVICT_PROTECT_OLDEST longest-connected handshaken
        peers, and a peer we are downloading from. Of the others the worst goes:
        the highest misbehaviour score, then one still without a handshake,
        then one from the address with the most connections, then the newest.
        """
        protected = {id(p) for p in inbound if p.download is not None}
        deliverers = sorted(
            (p for p in inbound if p.cheeses_delivered), key=lambda p: p.last_cheese_at
        )
        protected.update(
            id(p) for p in deliverers[-EVICT_PROTECT_DELIVERERS:] if EVICT_PROTECT_DELIVERERS
        )
        oldest = sorted((p for p in inbound if p.ready), key=lambda p: p.connected_at)
        protected.update(id(p) for p in oldest[:EVICT_PROTECT_OLDEST])
        candidates = [p for p in inbound if id(p) not in protected]
        if not candidates:
            return None
        return max(
            candidates,
            key=lambda p: (p.score, not p.ready, self.per_ip[p.peer_host() or "?"], p.connected_at),
        )

    def _refuse(self, host: str, why: str) -> BusyProtocol:
        """A connection turned away: it is told why (ERROR busy), then closed."""
        self.refused += 1
        if self.refused % 100 == 1:
            self.log.warn(
                "Refused a connection from {host}: {why} ({n} refused so far)",
                host=host,
                why=why,
                n=self.refused,
            )
        return BusyProtocol(why)

    def opened(self, proto: MemberProtocol) -> None:
        """Count a new connection (either direction)."""
        self.per_ip[proto.peer_host() or "?"] += 1
        if not proto.outbound:
            self.inbound_count += 1

    def closed(self, proto: MemberProtocol) -> None:
        """A counted connection closed."""
        host = proto.peer_host() or "?"
        self.per_ip[host] -= 1
        if self.per_ip[host] <= 0:
            del self.per_ip[host]
        if not proto.outbound:
            self.inbound_count -= 1
