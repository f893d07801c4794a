"""``MemberBuilder``: the member's services built in small named steps.

``makeService`` (``cheesecoin.member.tap``) runs them in this order: open
the store, build the node, the peer layer, the shutdown part, the member
port, the web side (metrics, events, API) and the miner port, the links to
trackers, mining, the timers. The services are started in the order they
are added and stopped in the reverse one, the shutdown part last.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime
from twisted.logger import Logger

from cheesecoin.core.cheese import Network, NetworkError, load_network
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.member import links
from cheesecoin.member.lifecycle import MemberService, Shutdown
from cheesecoin.member.options import Options
from cheesecoin.member.storewatch import StoreWatch
from cheesecoin.p2p.manager import FEATURES, REFILL_INTERVAL, PeerManager
from cheesecoin.p2p.sync import STATS_INTERVAL
from cheesecoin.storage.peerfile import load_peers
from cheesecoin.util.services import FatalStop, ListeningEndpoint, ServerService, server_endpoint
from cheesecoin.web.events import HEARTBEAT, EventLog
from cheesecoin.web.metrics import MemberMetrics
from cheesecoin.wire.limits import PING_INTERVAL

MEMPOOL_SAVE_INTERVAL = 60.0
STORE_CHECK_INTERVAL = 10.0  # seconds between checks that the database is still there

log = Logger(namespace="cheesecoin.member")


def _timer(
    parent: MultiService,
    name: str,
    interval: float,
    call: Callable[[], object],
    clock: IReactorTime,
) -> None:
    timer = TimerService(interval, call)
    timer.clock = clock
    timer.setName(name)
    timer.setServiceParent(parent)


class MemberBuilder:
    """Builds the member's ``MultiService`` from the parsed options, one step a
    method; each step keeps what the later ones need on ``self``."""

    def __init__(self, config: Options, reactor: Any) -> None:
        self.config = config
        # twistd's reactor (or a test's MemoryReactorClock): an IReactorTime,
        # IReactorTCP and IReactorCore at once, which no one Twisted type says
        self.reactor = reactor
        self.data_dir: str = config["data-dir"]
        self.top = MemberService()
        self.identity: Optional[Ed25519PrivateKey] = None  # when tls is listed
        self.node_id: Optional[str] = None
        self.fatal = FatalStop(reactor, log)  # stops the member with one line

    def build(self) -> MemberService:
        """Every step in order; SystemExit with one line when the member cannot start."""
        network = self.load_network()
        # section 5.3, when tls is listed
        self.identity, self.node_id = links.identity_node_id(self.config, self.data_dir)
        stack = self.open_store(network)
        node = self.build_node(stack, network)
        miner_address = self.miner_address(stack)
        manager = self.build_peer_layer(node)
        shutdown = self.add_shutdown(node, manager)
        self.serve_members(node, manager, network)
        events = self.add_web_side(node, manager, shutdown)
        self.serve_miners(node, miner_address)
        links.start_trackers(self.config, manager, self.top, self.reactor)
        self.add_mining(node, miner_address)
        self.add_timers(stack, manager, shutdown, events)
        self.top.node = node
        self.top.manager = manager
        return self.top

    def load_network(self) -> Network:
        network: Optional[Network] = self.config.get("network-object")
        if network is not None:
            return network
        try:
            return load_network(self.config["network"])
        except NetworkError as e:
            raise SystemExit(f"cheesemember: {e}")

    def open_store(self, network: Network) -> CheeseStack:
        """The stack from the data directory (rebuilt first with --reindex)."""
        from cheesecoin.storage.sqlite import CorruptStore, StorageError, open_stack

        if self.config["reindex"]:
            self.reindex(network)
        try:
            return open_stack(self.data_dir, network)
        except (StorageError, OSError) as e:
            # --reindex mends a damaged database, not a foreign file, another
            # network's stack or a directory we may not write: hint it only then.
            reindexable = isinstance(e, CorruptStore) and not self.config["reindex"]
            hint = (
                " (start with --reindex to rebuild it from the cheeses that are still readable)"
                if reindexable
                else ""
            )
            raise SystemExit(f"cheesemember: {e}{hint}")

    def reindex(self, network: Network) -> None:
        from cheesecoin.storage.reindex import reindex
        from cheesecoin.storage.sqlite import StorageError

        try:
            result = reindex(
                self.data_dir, network, log=lambda line: log.warn("Reindex: {line}", line=line)
            )
        except (StorageError, OSError) as e:
            raise SystemExit(f"cheesemember: --reindex: {e}")
        log.info("{summary}", summary=result.summary()[0].upper() + result.summary()[1:])

    def build_node(self, stack: CheeseStack, network: Network) -> MemberNode:
        """The node over the stack, stopping the member when the store cannot be
        written, with the saved mempool."""
        node = MemberNode(stack, data_dir=self.data_dir, node_id=self.node_id)

        def storage_failed(error: Exception) -> None:
            self.fatal(
                f"{str(error)[0].upper()}{str(error)[1:]}: the stack is kept on disk up to "
                f"height {node.stack.height}; stopping (start again once it can be written)"
            )

        node.storage_listeners.append(storage_failed)
        restored = node.load_mempool()
        log.info(
            "Loaded the stack of {network} from {dir}: height {height}, tip {tip} "
            "({txs} pending transactions)",
            network=network.name,
            dir=self.data_dir,
            height=stack.height,
            tip=stack.tip.smell,
            txs=restored,
        )
        return node

    def miner_address(self, stack: CheeseStack) -> str:
        """--miner-address, or the member's wallet's address."""
        from cheesecoin.storage.wallet import WalletError, member_address

        try:
            address: str = self.config["miner-address"] or member_address(self.data_dir)
        except WalletError as e:
            stack.close()
            raise SystemExit(f"cheesemember: the member's wallet: {e} (or give --miner-address)")
        return address

    def build_peer_layer(self, node: MemberNode) -> PeerManager:
        """The peer manager with its TLS policy, --connect peers and saved address book."""
        config = self.config
        manager = PeerManager(
            node,
            self.reactor,
            verify_in_threads=True,
            target_peers=config["peers"],
            max_inbound=config["max-inbound"],
            max_per_ip=config["max-per-ip"],
            features=config.get("feature-names", FEATURES),
        )
        links.install_tls(config, manager, self.identity, self.data_dir)
        for host, port in config["connect"]:
            manager.add_persistent(host, port)
        saved, why = load_peers(self.data_dir)
        if why is not None:
            log.warn("Ignoring the saved address book: {why}", why=why)
        elif saved:
            log.info(
                "Loaded {n} members from the saved address book: they are dialled first",
                n=manager.addresses.load_saved(saved),
            )
        return manager

    def add_shutdown(self, node: MemberNode, manager: PeerManager) -> Shutdown:
        shutdown = Shutdown(node, manager)  # stopped after every other part
        shutdown.setName("shutdown")
        shutdown.setServiceParent(self.top)
        self.top.shutdown = shutdown
        return shutdown

    def serve(
        self,
        name: str,
        what: str,
        prefix: str,
        factory: IProtocolFactory,
        on_listen: Optional[Callable[[IListeningPort], None]] = None,
    ) -> None:
        """Listen on config[prefix + "port"] at config[prefix + "interface"]."""
        interface = self.config[prefix + "interface"]

        def listened(port: IListeningPort) -> None:
            if on_listen is not None:
                on_listen(port)
            else:
                log.info(
                    "{what} on {host}:{port}",
                    what=what,
                    host=interface,
                    port=_port_of(port),
                )

        endpoint = server_endpoint(self.reactor, interface, self.config[prefix + "port"])
        service = ServerService(
            ListeningEndpoint(endpoint, listened), factory, "cheesemember", what
        )
        service.setName(name)
        service.setServiceParent(self.top)

    def serve_members(self, node: MemberNode, manager: PeerManager, network: Network) -> None:
        """The member port; once it listens, the first peers are dialled."""
        config = self.config

        def listening(port: IListeningPort) -> None:
            manager.listen_port = _port_of(port)
            log.info(
                "Member {node_id} listening on {host}:{port} "
                "(network {network}, height {height}, target {peers} peers)",
                node_id=node.node_id,
                host=config["interface"],
                port=manager.listen_port,
                network=network.name,
                height=node.stack.height,
                peers=config["peers"],
            )
            manager.refill()

        self.serve("member", "members", "", manager.factory, listening)

    def add_web_side(self, node: MemberNode, manager: PeerManager, shutdown: Shutdown) -> EventLog:
        """The metrics, the event log and the HTTP API."""
        from cheesecoin.web.api import make_site

        metrics = MemberMetrics(node)
        manager.traffic = metrics.traffic
        events = shutdown.events = EventLog(node, self.reactor)
        self.serve("api", "HTTP API", "api-", make_site(node, metrics, events))
        return events

    def serve_miners(self, node: MemberNode, miner_address: str) -> None:
        from cheesecoin.mining.port import MinerPortFactory

        factory = MinerPortFactory(node, miner_address, self.reactor)
        self.serve("miner-port", "Miner port", "miner-", factory)

    def add_mining(self, node: MemberNode, miner_address: str) -> None:
        """With --mine, the miner on every core (or --mining-workers)."""
        if not self.config["mine"]:
            return
        from cheesecoin.mining.service import MiningService

        miner = MiningService(node, miner_address, self.config["mining-workers"], self.reactor)
        miner.setName("mining")
        miner.setServiceParent(self.top)
        log.info("Mining for {address}", address=miner_address)

    def add_timers(
        self, stack: CheeseStack, manager: PeerManager, shutdown: Shutdown, events: EventLog
    ) -> None:
        top, reactor = self.top, self.reactor
        _timer(top, "ping", PING_INTERVAL, manager.ping_all, reactor)
        _timer(top, "compare-stacks", STATS_INTERVAL, manager.compare_stacks, reactor)
        _timer(top, "refill", REFILL_INTERVAL, manager.tick, reactor)
        _timer(top, "save-state", MEMPOOL_SAVE_INTERVAL, shutdown.save_state, reactor)
        _timer(top, "event-heartbeat", HEARTBEAT, events.heartbeat, reactor)
        from cheesecoin.storage.sqlite import SqliteStore

        store = stack.store
        if not isinstance(store, SqliteStore):
            raise TypeError(f"the member's stack is not on disk: {store!r}")
        watch = StoreWatch(store.path, self.fatal)
        _timer(top, "watch-store", STORE_CHECK_INTERVAL, watch.check, reactor)


def _port_of(port: IListeningPort) -> int:
    """The TCP port a listening port was given (0 asks for a free one)."""
    host = port.getHost()
    if not isinstance(host, (IPv4Address, IPv6Address)):
        raise TypeError(f"not a TCP port: {host!r}")
    return host.port
