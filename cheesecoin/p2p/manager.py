"""The peer manager: every member connection, admission, bans, eviction and
dialling; ``MemberFactory`` only builds the protocol of each inbound
connection it admits. Syncing (``cheesecoin.p2p.sync``), relaying
(``cheesecoin.p2p.relay``) and the address book (``cheesecoin.p2p.peers``)
are its parts.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.errors import ProtocolError
from cheesecoin.core.node import MemberNode
from cheesecoin.p2p.compact import CompactRelay
from cheesecoin.p2p.compact_modes import CompactModes
from cheesecoin.p2p.features import ALL as ALL_FEATURES
from cheesecoin.p2p.inventory import Inventory
from cheesecoin.p2p.mempool_sync import MempoolExchange
from cheesecoin.p2p.peers import Address, AddressBook
from cheesecoin.p2p.protocol import REQUEST_TIMEOUT, MemberProtocol, node_id_key
from cheesecoin.p2p.relay import Relay
from cheesecoin.p2p.states import get_work
from cheesecoin.p2p.sync import Sync
from cheesecoin.util.addresses import is_loopback
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import PEERS_PER_REPLY, PING_INTERVAL, PROTOCOL_VERSION
from cheesecoin.wire.lineproto import BusyProtocol

SILENCE_TIMEOUT = 90.0
REFILL_INTERVAL = 5.0
CONSENSUS_INTERVAL = (
    10.0  # seconds between two stack comparisons a CONSENSUS may ask for (section 5.1)
)
# The features this member implements (docs/protocol.md section 10 says how far).
FEATURES: Tuple[str, ...] = ALL_FEATURES  # sections 5.1 and 5.2 (p2p/features.py)
HANDSHAKE_TIMEOUT = 30.0
BAN_SECONDS = 3600.0
# Eviction (a new inbound connection when max_inbound are open): these are never evicted.
EVICT_PROTECT_DELIVERERS = 4  # the inbound peers that most recently gave us a new cheese
EVICT_PROTECT_OLDEST = 4  # the longest-connected handshaken inbound peers

Dialer = Callable[[str, int, Factory], Deferred]


class MemberFactory(Factory):
    """Builds the protocol of each inbound connection the peer manager admits."""

    noisy = False

    def __init__(self, manager: "PeerManager") -> None:
        self.manager = manager

    def buildProtocol(self, addr: Any) -> Any:
        return self.manager.admit(addr)


class _OutboundFactory(Factory):
    """Builds the protocol of a connection we dial."""

    noisy = False

    def __init__(self, manager: "PeerManager", address: Address) -> None:
        self.manager = manager
        self.address = address

    def buildProtocol(self, addr: Any) -> MemberProtocol:
        return MemberProtocol(self.manager, outbound=True, dial_address=self.address)


class PeerManager:
    """Accepts and dials members, keeps ``target_peers`` of them, scores
    misbehaviour and bans by IP (never loopback; those are closed and their
    address is not redialled for the ban time), and with ``max_inbound``
    inbound connections open evicts the least useful one for a newcomer.

    ``reactor`` (an IReactorTime: the real reactor, a ``task.Clock`` in tests,
    the simulator's clock) drives every timer; ``dialer(host, port, factory)
    -> Deferred`` opens outbound connections; ``verify_in_threads`` checks
    downloaded signatures in the CPU thread pool.
    """

    log = Logger(namespace="cheesecoin.member")

    def __init__(
        self,
        node: MemberNode,
        reactor: IReactorTime,
        target_peers: int = 8,
        max_inbound: int = 32,
        max_per_ip: int = 64,
        dialer: Optional[Dialer] = None,
        rng: Optional[random.Random] = None,
        ban_seconds: float = BAN_SECONDS,
        verify_in_threads: bool = False,
        features: Tuple[str, ...] = FEATURES,
    ) -> None:
        self.node = node
        self.clock = reactor
        self.reactor = reactor
        self.target_peers = target_peers
        self.max_inbound = max_inbound
        self.max_per_ip = max_per_ip
        self.dialer: Dialer = dialer or self._dial_tcp
        self.rng = rng or random.Random()
        self.ban_seconds = ban_seconds
        self.listen_port: Optional[int] = None
        self.traffic: Optional[Callable[[str, str, int], None]] = (
            None  # each connection's traffic hook (metrics)
        )
        self.peer_sources: List[
            Any
        ] = []  # where more addresses come from (the tracker link): request_peers()
        self.peers: Dict[str, MemberProtocol] = {}  # node_id -> handshaken connection
        self.connections: Set[MemberProtocol] = set()
        self.inbound_count = 0
        self.per_ip: Counter = Counter()
        self.addresses = AddressBook(self.rng)
        self.banned: Dict[str, float] = {}
        self.refused = 0
        self._last_peer_request = -1e18
        self._silence_due = 0.0  # drop_silent has nothing to do before this time
        self.factory = MemberFactory(self)
        self.sync = Sync(self, verify_in_threads)
        self.relay = Relay(self)
        self.features = tuple(features)  # the section 5.1 features listed in our HELLO
        self.mempool_sync = MempoolExchange(self)
        self.compact = CompactRelay(self)
        self.inventory = Inventory(self)
        self.modes = CompactModes(self)
        self._last_consensus = -1e18
        self.tls: Any = (
            None  # section 5.3: a TlsPolicy (cheesecoin.p2p.tls), set by the member's tap
        )
        node.register_peers(self)

    def add_peer_source(self, source: Any) -> None:
        """Something that can find more members (``request_peers()``): the tracker link."""
        self.peer_sources.append(source)

    # -- what we tell others ----------------------------------------------------------

    def hello_message(self) -> dict:
        stack = self.node.stack
        hello = {
            "type": "HELLO",
            "version": PROTOCOL_VERSION,
            "network": self.node.network.smell,
            "node_id": self.node.node_id,
            "port": self.listen_port,
            "height": stack.height,
            "tip": stack.tip.smell,
            "work": str(stack.work),
        }
        if self.features:
            hello["features"] = list(self.features)
        return hello

    def consensus_asked(self, proto: MemberProtocol) -> None:
        """A peer sent CONSENSUS: compare stacks with every peer now, at most once every CONSENSUS_INTERVAL."""
        now = self.clock.seconds()
        if now - self._last_consensus >= CONSENSUS_INTERVAL:
            self._last_consensus = now
            self.compare_stacks()

    def peers_info(self) -> List[dict]:
        """The connected peers, for the HTTP API."""
        return [
            {
                "host": p.peer_host() or "?",
                "port": p.listening_address[1] if p.listening_address else None,
                "node_id": node_id,
                "height": p.peer_height,
                "inbound": not p.outbound,
                "encrypted": p.encrypted,
            }
            for node_id, p in sorted(self.peers.items())
        ]

    def sync_status(self) -> Optional[str]:
        """Why the node is not ready (a download from a peer with more work), or None."""
        return self.sync.status()

    def peers_for(self, asker: Optional[MemberProtocol]) -> List[dict]:
        """Up to 10 members we know to be listening (tried ones first), never the asker."""
        own = asker.listening_address if asker is not None else None
        sample = self.addresses.reply_sample(PEERS_PER_REPLY, own, self.clock.seconds())
        return (
            sample if self.tls is None else self.tls.pins.annotate(sample)
        )  # node_ids we know (5.3)

    # -- connections ------------------------------------------------------------------------

    def admit(self, addr: Any) -> Any:
        """The protocol of a new inbound connection, or a BusyProtocol that refuses it."""
        host = getattr(addr, "host", None) or "?"
        if self.is_banned(host):
            return self._refuse(host, "the address is banned")
        # Many members and tools share a loopback address: per-address limits never apply to it.
        if self.per_ip[host] >= self.max_per_ip and not is_loopback(host):
            return self._refuse(host, f"{self.per_ip[host]} connections from {host} already")
        inbound = [p for p in self.connections if not p.outbound and not p.closing]
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
        return MemberProtocol(self, outbound=False)

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

    def connection_made(self, proto: MemberProtocol) -> None:
        self.connections.add(proto)
        self._silence_due = 0.0  # drop_silent: look at the new one at the next tick
        self.per_ip[proto.peer_host() or "?"] += 1
        if not proto.outbound:
            self.inbound_count += 1
        if proto.dial_address is not None:
            self.addresses.opened(proto.dial_address)

    def connection_lost(self, proto: MemberProtocol) -> None:
        if proto not in self.connections:
            return
        self.connections.discard(proto)
        host = proto.peer_host() or "?"
        self.per_ip[host] -= 1
        if self.per_ip[host] <= 0:
            del self.per_ip[host]
        if not proto.outbound:
            self.inbound_count -= 1
        if proto.download is not None:
            proto.download.finish()
        self.modes.peer_gone(proto)
        self.inventory.peer_gone(proto)
        self.relay.peer_gone(proto)
        if proto.dial_address is not None:
            self.addresses.lost(proto.dial_address, proto.ready, self.clock.seconds())
        if proto.peer_node_id is not None and self.peers.get(proto.peer_node_id) is proto:
            del self.peers[proto.peer_node_id]
            self.log.info(
                "Peer {peer} disconnected ({n} peers)", peer=proto.label(), n=len(self.peers)
            )
            self.sync.maybe_sync()

    def connected_to_self(self, proto: MemberProtocol) -> None:
        if proto.dial_address is not None:
            self.addresses.is_self(proto.dial_address)

    def accept_peer(self, proto: MemberProtocol) -> bool:
        """One connection per node_id: of two opened by different sides, keep the one
        opened by the smaller node_id; of two opened by the same side, the newer,
        except that a second inbound connection claiming the node_id of an inbound
        peer from another address is refused (an impostor would otherwise push
        that peer out; a real redial comes from the same address)."""
        node_id = proto.peer_node_id
        assert node_id is not None
        existing = self.peers.get(node_id)
        if existing is None or existing is proto:
            return True
        own = self.node.node_id

        def opener(p: MemberProtocol) -> str:
            return own if p.outbound else node_id  # type: ignore[return-value]

        if opener(existing) != opener(proto):
            smaller = min(own, node_id, key=node_id_key)
            if opener(proto) != smaller:
                return False
        elif not proto.outbound and existing.peer_host() != proto.peer_host():
            self.log.info(
                "Refused {peer}: node id {node_id} is connected from {other}",
                peer=proto.label(),
                node_id=node_id[:16],
                other=existing.label(),
            )
            return False
        del self.peers[node_id]
        existing.close()
        return True

    def peer_ready(self, proto: MemberProtocol) -> None:
        """The handshake is done: count the peer, learn its address, compare stacks."""
        self.peers[proto.peer_node_id] = proto  # type: ignore[index]
        claimed = proto.listening_address if proto.peer_port else None  # inbound: at most "new"
        self.addresses.connected(proto.outbound, proto.dial_address, claimed, self.clock.seconds())
        self.log.info(
            "Peer {peer} connected ({direction}, height {height}; {n} peers)",
            peer=proto.label(),
            direction="outbound" if proto.outbound else "inbound",
            height=proto.peer_height,
            n=len(self.peers),
        )
        if len(self.peers) < self.target_peers:
            proto.request({"type": "GET_PEERS"}).addErrback(lambda f: None)
        self.sync.maybe_sync()  # on the HELLO's figures at once; STATS confirms them
        self.ask_stats(proto)
        self.mempool_sync.maybe_start(proto)  # now, or once one of us has caught up
        self.modes.peer_ready(proto)

    def delivered(self, proto: MemberProtocol, count: int) -> None:
        """``proto`` gave us ``count`` new cheeses: a useful peer, protected from eviction."""
        if count:
            proto.cheeses_delivered += count
            proto.last_cheese_at = self.clock.seconds()

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
            for address in {proto.dial_address, proto.listening_address} - {None}:
                info = self.addresses.known.get(address)  # type: ignore[arg-type]
                if info is not None:
                    info.next_try = max(info.next_try, self.clock.seconds() + self.ban_seconds)
            return
        self.banned[host] = self.clock.seconds() + self.ban_seconds
        self.log.warn(
            "Banning {host} for {secs:.0f} s: {why}", host=host, secs=self.ban_seconds, why=why
        )
        for other in list(self.connections):
            if other.peer_host() == host:
                other.close()

    # -- addresses and dialing ------------------------------------------------------------

    def add_addresses(self, peers: List[Any], source: str) -> int:
        """Learn addresses from a PEERS list told by ``source`` ("tracker", a host); dial if new."""
        added = self.addresses.add(peers, source, self.clock.seconds())
        if added:
            self.refill()
        return added

    def add_persistent(self, host: str, port: int) -> None:
        """A --connect address: dialled whenever we are not connected to it."""
        self.addresses.add_persistent((host, port))

    def _connected_addresses(self) -> Set[Address]:
        out = set()
        for p in self.connections:
            for address in (p.dial_address, p.listening_address):
                if address is not None:
                    out.add(address)
        return out

    def refill(self) -> None:
        """Dial known members until we have (or are dialing) ``target_peers``."""
        now = self.clock.seconds()
        book = self.addresses
        if len(self.peers) >= self.target_peers and not book.persistent:
            return  # the common case, every few seconds: nothing to dial (no count of the pending)
        pending = sum(1 for p in self.connections if p.outbound and not p.ready)
        want = self.target_peers - len(self.peers) - pending - len(book.dialing)
        if want <= 0 and not book.persistent:
            return  # the common case, every few seconds: nothing to dial
        busy = self._connected_addresses()
        for address in sorted(book.persistent):
            if book.due(address, book.remember(address), now, busy, self.is_banned):  # type: ignore[arg-type]
                self.dial(address)
                want -= 1
        if want <= 0:
            return
        candidates = book.select(want, now, busy, self.is_banned)  # anchors first, distinct groups
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
        for p in list(self.peers.values()):
            p.request({"type": "GET_PEERS"}).addErrback(lambda f: None)

    def dial(self, address: Address) -> None:
        info = self.addresses.remember(address)
        if info is None:
            return
        self.addresses.dialing.add(address)
        info.next_try = self.clock.seconds() + REQUEST_TIMEOUT
        try:
            d = self.dialer(address[0], address[1], _OutboundFactory(self, address))
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

    def _dial_tcp(self, host: str, port: int, factory: Factory) -> Deferred:
        from twisted.internet.endpoints import HostnameEndpoint

        return HostnameEndpoint(self.reactor, host, port, timeout=10).connect(factory)

    # -- timers ----------------------------------------------------------------------------

    def ping_all(self) -> None:
        """Every 30 s: PING each peer (``tick`` drops those silent too long)."""
        for p in list(self.peers.values()):
            p.ping()

    def drop_silent(self) -> None:
        now = self.clock.seconds()
        if now < self._silence_due:
            return  # nobody can be silent for long enough yet (last_seen only grows)
        silent, slow = now - SILENCE_TIMEOUT, now - HANDSHAKE_TIMEOUT
        due = float("inf")
        victims = []
        for p in self.connections:
            deadline = (
                p.last_seen + SILENCE_TIMEOUT if p.ready else p.connected_at + HANDSHAKE_TIMEOUT
            )
            if deadline <= now and (p.last_seen < silent if p.ready else p.connected_at < slow):
                victims.append(p)
            elif deadline < due:
                due = deadline
        self._silence_due = due
        for p in victims:
            if p.ready:
                self.log.info(
                    "Dropping {peer}: silent for {secs:.0f} s",
                    peer=p.label(),
                    secs=now - p.last_seen,
                )
            p.abort()

    def tick(self) -> None:
        """Every few seconds: drop silent peers, end stalled downloads, forget ended
        bans, dial more."""
        self.drop_silent()
        self.sync.watchdog()
        now = self.clock.seconds()
        for host in [h for h, until in self.banned.items() if until <= now]:
            del self.banned[host]
        self.refill()

    def compare_stacks(self) -> None:
        """Every 60 s: STATS to every peer; sync from one with more work."""
        for p in list(self.peers.values()):
            self.ask_stats(p)

    def ask_stats(self, proto: MemberProtocol) -> Deferred:
        def got(reply: dict) -> None:
            try:
                height = wire.get_int(reply, "height")
                tip = wire.get_smell(reply, "tip")
                work = get_work(reply)
            except ProtocolError:
                proto.misbehaved(10, "a malformed STATS_REPLY")
                return
            proto.peer_height, proto.peer_tip, proto.peer_work = height, tip, work
            if work > self.node.stack.work:  # only then can this reply start a download
                self.sync.maybe_sync()
            self.mempool_sync.maybe_start(proto)

        return proto.request({"type": "STATS"}).addCallbacks(got, lambda f: None)

    # -- shutting down ---------------------------------------------------------------------

    def close_all(self) -> None:
        """Close every connection and flush (the member is stopping)."""
        for p in list(self.connections):
            p.close()
        self.relay.flush()
