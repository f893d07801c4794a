# The CheeseCoin tracker: the rendezvous server of docs/protocol.md section 2.
#
# Messages it speaks (JSON lines, docs/protocol.md section 1), request -> reply:
#
#   {"type":"REGISTER","port":P}  (optional "host":H, "node_id":ID)  -> PEERS
#   {"type":"GET_PEERS"}                                -> PEERS
#   {"type":"UNREGISTER"}                               -> {"type":"OK"}
#   {"type":"PING"}                                     -> {"type":"PONG"}
#
#   PEERS is {"type":"PEERS","peers":[{"host":H,"port":P}, ...]}: at most 10
#   other active members, at random, never the asker, no duplicates.
#   Errors: ERROR bad-json, bad-message, unknown-type, too-long (framing and
#   fields, see cheesecoin.wire.lineproto) and busy (REGISTER when the tracker
#   already holds --max-members members).
#
# Every message counts as activity; a member is removed when its connection
# closes, when it sends UNREGISTER, or when it stays silent past the timeout.
"""The tracker's Twisted side: ``TrackerProtocol`` (one connection) and
``TrackerFactory`` (limits, timeouts, the registry); ``cheesecoin.tracker.tap``
builds the service."""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from typing import Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.errors import ProtocolError
from cheesecoin.tracker.registry import (
    DEFAULT_MAX_MEMBERS,
    Member,
    TrackerRegistry,
    registrable_host,
)
from cheesecoin.util.addresses import canonical_ip, is_loopback
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import PEERS_PER_REPLY
from cheesecoin.wire.lineproto import BusyProtocol, JsonLineProtocol

DEFAULT_TIMEOUT = 90.0
DEFAULT_MAX_PER_IP = 256


class TrackerProtocol(JsonLineProtocol):
    """One connection to the tracker (a member, or a tool asking for peers)."""

    factory: "TrackerFactory"
    ip: Optional[str] = None  # the address counted against the per-IP limit

    def connectionMade(self) -> None:
        self.clock = self.factory.clock
        self.start_producing()  # stop reading from a peer that does not read its replies

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.closing = True
        self.release_buffers()
        self.factory.connection_lost(self)

    def line_received(self, line: bytes) -> None:
        self.factory.touch(self)
        super().line_received(line)

    def peers_message(self) -> dict:
        peers = self.factory.registry.sample(
            excluding=self, k=PEERS_PER_REPLY, rng=self.factory.rng
        )
        return {"type": "PEERS", "peers": [member.as_peer() for member in peers]}

    def msg_REGISTER(self, msg: dict) -> None:
        port = wire.get_port(msg, "port")
        remote = canonical_ip(self.peer_host() or "")
        if msg.get("host") is None:
            if remote is None:
                raise ProtocolError(
                    "bad-message", "field 'host' is missing and the address is unknown"
                )
            host = remote
        else:
            host = registrable_host(wire.get_host(msg, "host"), remote)
        node_id = None
        if msg.get("node_id") is not None:
            node_id = wire.get_str(msg, "node_id", 64)
            if not wire.NODE_ID_RE.match(node_id):  # a REGISTER's node_id (section 2)
                raise wire.BadMessage("field 'node_id' must be 1 to 64 lowercase hex characters")
        self.factory.register(self, host, port, remote, node_id)
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

    noisy = False
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float = DEFAULT_TIMEOUT,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_per_ip: int = DEFAULT_MAX_PER_IP,
        max_connections: Optional[int] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        self.registry = TrackerRegistry(max_members, self.rng)
        self.timeout = timeout
        self.max_per_ip = max_per_ip
        self.max_connections = (
            max_connections if max_connections is not None else max_members + 1024
        )
        self.connection_count = 0
        self.per_ip: Counter[str] = Counter()
        # Every open connection, by last activity, oldest first.
        self._activity: OrderedDict[TrackerProtocol, float] = OrderedDict()
        self.refused = 0
        self.refused_registrations = 0
        self.registrations = 0

    @property
    def sweep_interval(self) -> float:
        """How often ``sweep`` should run: often enough to remove silent members promptly."""
        return max(0.05, min(1.0, self.timeout / 4))

    def listening(self, port: Optional[IListeningPort] = None) -> None:
        """Called once the listening port is open."""
        if port is not None:
            host = port.getHost()
            self.log.info(
                "Tracker listening on {host}:{port} (timeout {timeout}s, "
                "at most {max_members} members, {max_per_ip} connections per address)",
                host=_host_of(host),
                port=host.port if isinstance(host, (IPv4Address, IPv6Address)) else "?",
                timeout=self.timeout,
                max_members=self.registry.max_members,
                max_per_ip=self.max_per_ip,
            )
        self.log.info("Tracker waiting for new connection.")

    # -- connections ---------------------------------------------------------

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        ip = _host_of(addr)
        if self.connection_count >= self.max_connections:
            return self._refuse(ip, f"the tracker has {self.connection_count} connections open")
        # Many members and tools share a loopback address: per-address limits never apply to it.
        if self.per_ip[ip] >= self.max_per_ip and not is_loopback(ip):
            return self._refuse(ip, f"{self.per_ip[ip]} connections from {ip} already")
        proto = TrackerProtocol()
        proto.factory = self
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

    def register(
        self,
        proto: TrackerProtocol,
        host: str,
        port: int,
        remote: Optional[str] = None,
        node_id: Optional[str] = None,
    ) -> Member:
        """Register ``proto``'s member (from ``remote``); ``ProtocolError("busy")``
        when full or when (host, port) is registered from another address."""
        try:
            member, removals = self.registry.register(
                proto, host, port, self.clock.seconds(), remote, node_id
            )
        except ProtocolError:
            self.refused_registrations += 1
            raise
        self.registrations += 1
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


def _host_of(address: Optional[IAddress]) -> str:
    """The IP address of a TCP address, or "?" for another kind."""
    return address.host if isinstance(address, (IPv4Address, IPv6Address)) else "?"
