# Dialling: docs/protocol.md sections 5 and 7.
#
# Messages it sends: {"type":"GET_PEERS"} to every peer (and GET_PEERS to the
# tracker, by its link's request_peers) when the address book has too few
# members to dial, at most every 30 s; the PEERS replies fill the book.
"""Dialling: keep ``target_peers`` members, from the address book.

``Dialler.refill`` (every few seconds, and when new addresses come) dials
the persistent (``--connect``) addresses we are not connected to and as many
known members as we lack (anchors first, from distinct groups); when the book
has too few it asks the peer sources (the tracker) and our peers for more,
at most every 30 s.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Set

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.p2p.admission import BanList
from cheesecoin.p2p.interfaces import ConnectionPool, PeerSource
from cheesecoin.p2p.peers import AddressBook
from cheesecoin.p2p.protocol import REQUEST_TIMEOUT, MemberProtocol
from cheesecoin.util.addresses import Address
from cheesecoin.wire.limits import PING_INTERVAL

Dialer = Callable[[str, int, Factory], Deferred]  # (host, port, factory) -> connected


def tcp_dialer(reactor: IReactorTime) -> Dialer:
    """The dialer of a real member: TCP by host name, 10 s to connect."""

    def dial(host: str, port: int, factory: Factory) -> Deferred:
        from twisted.internet.endpoints import HostnameEndpoint

        return HostnameEndpoint(reactor, host, port, timeout=10).connect(factory)

    return dial


class _OutboundFactory(Factory):
    """Builds the protocol of a connection we dial."""

    noisy = False

    def __init__(self, pool: ConnectionPool, address: Address) -> None:
        self.pool = pool
        self.address = address

    def buildProtocol(self, addr: Optional[IAddress]) -> MemberProtocol:
        return self.pool.outbound_protocol(self.address)


class Dialler:
    """Dials known members until ``target_peers`` are connected or being dialled."""

    def __init__(
        self,
        clock: IReactorTime,
        log: Logger,
        pool: ConnectionPool,
        addresses: AddressBook,
        bans: BanList,
        dialer: Dialer,
    ) -> None:
        self.clock = clock
        self.log = log
        self.pool = pool
        self.addresses = addresses
        self.bans = bans
        self.dialer = dialer
        self.peer_sources: List[PeerSource] = []  # where more addresses come from (the tracker)
        self._last_peer_request = -1e18

    def add_addresses(self, peers: List[Any], source: str) -> int:
        """Learn addresses from a PEERS list told by ``source`` ("tracker", a host); dial if new."""
        added = self.addresses.add(peers, source, self.clock.seconds())
        if added:
            self.refill()
        return added

    def _connected_addresses(self) -> Set[Address]:
        out = set()
        for p in self.pool.connections:
            for address in (p.dial_address, p.listening_address):
                if address is not None:
                    out.add(address)
        return out

    def refill(self) -> None:
        """Dial known members until we have (or are dialing) ``target_peers``."""
        now = self.clock.seconds()
        book, pool = self.addresses, self.pool
        if len(pool.peers) >= pool.target_peers and not book.persistent:
            return  # the common case, every few seconds: nothing to dial (no count of the pending)
        pending = sum(1 for p in pool.connections if p.outbound and not p.ready)
        want = pool.target_peers - len(pool.peers) - pending - len(book.dialing)
        if want <= 0 and not book.persistent:
            return  # the common case, every few seconds: nothing to dial
        busy = self._connected_addresses()
        is_banned = self.bans.is_banned
        for address in sorted(book.persistent):
            info = book.remember(address)
            if info is not None and book.due(address, info, now, busy, is_banned):
                self.dial(address)
                want -= 1
        if want <= 0:
            return
        candidates = book.select(want, now, busy, is_banned)  # anchors first, distinct groups
        for address in candidates:
            self.dial(address)
        if len(candidates) < want:
            self.ask_for_peers()

    def ask_for_peers(self) -> None:
        """Ask the tracker and our peers for more members (at most every 30 s)."""
        now = self.clock.seconds()
        if now - self._last_peer_request < PING_INTERVAL:
            return
        self._last_peer_request = now
        for source in self.peer_sources:
            source.request_peers()
        for p in list(self.pool.peers.values()):
            p.request({"type": "GET_PEERS"}).addErrback(lambda f: None)

    def dial(self, address: Address) -> None:
        info = self.addresses.remember(address)
        if info is None:
            return
        self.addresses.dialing.add(address)
        info.next_try = self.clock.seconds() + REQUEST_TIMEOUT
        try:
            d = self.dialer(address[0], address[1], _OutboundFactory(self.pool, address))
        except Exception:
            self.log.failure("Cannot dial {host}:{port}", host=address[0], port=address[1])
            self.addresses.failed(address, self.clock.seconds())
            return

        def failed(failure: Failure) -> None:
            self.log.debug(
                "Cannot connect to {host}:{port}: {why}",
                host=address[0],
                port=address[1],
                why=failure.getErrorMessage(),
            )
            self.addresses.failed(address, self.clock.seconds())

        d.addErrback(failed)
