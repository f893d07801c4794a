# The peer manager: docs/protocol.md sections 5 and 7.
#
# Messages it sends on its own: {"type":"GET_PEERS"} (to a new peer while we
# have too few; when the address book runs dry the dialler asks, see
# cheesecoin.p2p.dialler), {"type":"STATS"} (each new peer, then every 60 s; a
# STATS_REPLY updates the peer's claim), {"type":"PING"} every 30 s. What each
# received message does: cheesecoin.p2p.states.
"""The peer manager: the member's connections and the parts of the peer layer.

``PeerManager`` builds each part with the collaborators it uses (their
seams: ``cheesecoin.p2p.interfaces``): admission and bans
(``cheesecoin.p2p.admission``), dialling (``cheesecoin.p2p.dialler``), the
address book (``cheesecoin.p2p.peers``), syncing (``cheesecoin.p2p.sync``),
relaying (``cheesecoin.p2p.relay``), compact relay and its modes, the
inventory of transactions, the mempool exchange, and what the stack serves
(``cheesecoin.p2p.serving``). It keeps the handshaken peers (one per
node_id), their timers (PING, silence, STATS) and is the ``PeerHost`` of
every connection: each thing a peer's message asks of the member is one
call here, handed to the part that does it. ``MemberFactory`` only builds
the protocol of each inbound connection the admission lets in.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from cheesecoin.core.errors import ProtocolError
from cheesecoin.p2p.admission import BAN_SECONDS, Admission, BanList
from cheesecoin.p2p.compact import CompactRelay
from cheesecoin.p2p.compact_modes import CompactModes
from cheesecoin.p2p.dialler import Dialer, Dialler, tcp_dialer
from cheesecoin.p2p.features import ALL as ALL_FEATURES
from cheesecoin.p2p.fields import get_work
from cheesecoin.p2p.interfaces import PeerNode, PeerSource, Traffic
from cheesecoin.p2p.inventory import Inventory
from cheesecoin.p2p.mempool_sync import MempoolExchange
from cheesecoin.p2p.peers import AddressBook
from cheesecoin.p2p.protocol import MemberProtocol, node_id_key
from cheesecoin.p2p.relay import Relay
from cheesecoin.p2p.serving import StackServer
from cheesecoin.p2p.sync import Sync
from cheesecoin.util.addresses import Address
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import PEERS_PER_REPLY, PROTOCOL_VERSION

if TYPE_CHECKING:  # the TLS policy (and OpenSSL) only where the member lists tls
    from cheesecoin.p2p.tls import TlsPolicy

SILENCE_TIMEOUT = 90.0
REFILL_INTERVAL = 5.0
CONSENSUS_INTERVAL = 10.0  # seconds between two stack comparisons a CONSENSUS may ask for (5.1)
# The features this member implements (docs/protocol.md section 10 says how far).
FEATURES: Tuple[str, ...] = ALL_FEATURES  # sections 5.1 and 5.2 (p2p/features.py)
HANDSHAKE_TIMEOUT = 30.0

__all__ = ["FEATURES", "MemberFactory", "PeerManager", "REFILL_INTERVAL", "Dialer"]


class MemberFactory(Factory):
    """Builds the protocol of each inbound connection the peer manager admits."""

    noisy = False

    def __init__(self, manager: "PeerManager") -> None:
        self.manager = manager

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return self.manager.admit(addr)


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

    def __init__(
        self,
        node: PeerNode,
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
        log = self._log = Logger(namespace="cheesecoin.member")
        self.node = node
        self.clock = reactor
        self.target_peers = target_peers
        self.rng = rng or random.Random()
        self.listen_port: Optional[int] = None
        self.traffic: Optional[Traffic] = None  # each connection's traffic hook (metrics)
        self.peers: Dict[str, MemberProtocol] = {}  # node_id -> handshaken connection
        self.connections: Set[MemberProtocol] = set()
        self.features = tuple(features)  # the section 5.1 features listed in our HELLO
        self.tls: Optional[TlsPolicy] = None  # section 5.3, set by the member's builder
        self._silence_due = 0.0  # drop_silent has nothing to do before this time
        self._last_consensus = -1e18
        self.factory = MemberFactory(self)
        self.addresses = AddressBook(self.rng)
        self.bans = BanList(reactor, log, self, self.addresses, ban_seconds)
        self.admission = Admission(log, self, self.bans, max_inbound, max_per_ip)
        self.dialler = Dialler(
            reactor, log, self, self.addresses, self.bans, dialer or tcp_dialer(reactor)
        )
        self.server = StackServer(node)
        # The parts, each built after those it needs; two pairs need each other.
        self.sync = Sync(node, reactor, log, self, verify_in_threads)
        self.relay = Relay(node, reactor, log, self, self.sync)
        self.sync.use_relay(self.relay)
        self.mempool_sync = MempoolExchange(node, reactor, self, self.relay)
        self.inventory = Inventory(node, reactor, log, self, self.mempool_sync)
        self.compact = CompactRelay(node, reactor, log, self.relay, self.sync)
        self.modes = CompactModes(node, log, self, self.relay, self.compact)
        self.relay.attach(self.compact, self.modes, self.inventory, self.mempool_sync)
        node.register_peers(self)

    @property
    def log(self) -> Logger:
        return self._log

    @log.setter
    def log(self, log: Logger) -> None:
        """Another logger for the manager and every part (the simulator quiets members)."""
        self._log = log
        for part in (self.bans, self.admission, self.dialler, self.sync, self.relay):
            part.log = log
        self.inventory.log = self.compact.log = self.modes.log = log

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def network_smell(self) -> str:
        return self.node.network.smell

    def add_peer_source(self, source: PeerSource) -> None:
        """Something that can find more members (``request_peers()``): the tracker link."""
        self.dialler.peer_sources.append(source)

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
        """A peer sent CONSENSUS: compare stacks with every peer now, at most once
        every CONSENSUS_INTERVAL."""
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
        # node_ids we know (5.3)
        return sample if self.tls is None else self.tls.pins.annotate(sample)

    # -- what peers tell and ask us (PeerHost: one call each, to the part that does it) --

    def already_have(self, proto: MemberProtocol, smell: Any) -> bool:
        return self.relay.already_have(proto, smell)

    def receive_cheese(self, proto: MemberProtocol, cheese: dict) -> None:
        self.relay.receive_cheese(proto, cheese)

    def receive_tx(self, proto: MemberProtocol, tx: dict) -> None:
        self.relay.receive_tx(proto, tx)

    def receive_compact(self, proto: MemberProtocol, msg: dict) -> None:
        self.compact.receive(proto, msg)

    def receive_inv(self, proto: MemberProtocol, msg: dict) -> None:
        self.inventory.receive(proto, msg)

    def receive_header(self, proto: MemberProtocol, msg: dict) -> None:
        self.modes.receive_header(proto, msg)

    def compact_mode(self, proto: MemberProtocol, high_bandwidth: bool) -> None:
        self.modes.send_compact(proto, high_bandwidth)

    def compact_of(self, smell: str) -> Optional[dict]:
        return self.modes.compact_of(smell)

    def mempool_txids(self) -> List[str]:
        return self.mempool_sync.mempool_txids()

    def find_txs(self, txids: List[str], smell: Optional[str]) -> List[dict]:
        return self.mempool_sync.find_txs(txids, smell)

    # -- connections ------------------------------------------------------------------------

    def admit(self, addr: Optional[IAddress]) -> Protocol:
        """The protocol of a new inbound connection, or a BusyProtocol that refuses it."""
        return self.admission.admit(addr, lambda: MemberProtocol(self, outbound=False))

    def outbound_protocol(self, address: Address) -> MemberProtocol:
        """The protocol of a connection we dial to ``address``."""
        return MemberProtocol(self, outbound=True, dial_address=address)

    def connection_made(self, proto: MemberProtocol) -> None:
        self.connections.add(proto)
        self._silence_due = 0.0  # drop_silent: look at the new one at the next tick
        self.admission.opened(proto)
        if proto.dial_address is not None:
            self.addresses.opened(proto.dial_address)

    def connection_lost(self, proto: MemberProtocol) -> None:
        if proto not in self.connections:
            return
        self.connections.discard(proto)
        self.admission.closed(proto)
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
            return own if p.outbound else node_id

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
        assert proto.peer_node_id is not None
        self.peers[proto.peer_node_id] = proto
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

    def ban(self, proto: MemberProtocol, why: str) -> None:
        """Ban the peer's IP for a while (a loopback peer is only disconnected)."""
        self.bans.ban(proto, why)

    # -- addresses and dialing ------------------------------------------------------------

    def add_addresses(self, peers: List[Any], source: str) -> int:
        """Learn addresses from a PEERS list told by ``source`` ("tracker", a host); dial if new."""
        return self.dialler.add_addresses(peers, source)

    def add_persistent(self, host: str, port: int) -> None:
        """A --connect address: dialled whenever we are not connected to it."""
        self.addresses.add_persistent((host, port))

    def refill(self) -> None:
        """Dial known members until we have (or are dialing) ``target_peers``."""
        self.dialler.refill()

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
        self.bans.forget_ended()
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
            proto.claim(height, tip, work)
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
