"""``twistd cheesemember``: options and services of a member (docs/protocol.md s.5 and s.8).

    twistd -n cheesemember [--tracker HOST:PORT ...] [--port 24331] [--data-dir DIR]
                           [--network FILE] [--mine | --no-mine] [--miner-address A]
                           [--api-port 24332] [--miner-port 24333]
                           [--connect HOST:PORT[@NODE_ID] ...] [--require-tls] [--features F]

With ``tls`` among its features (``all`` lists it) the member has an
identity key in its data directory (``identity.key``, made at the first
start) and its node_id is that key; its links to members that list ``tls``
too are encrypted (docs/protocol.md section 5.3, ``cheesecoin.member.links``).

The stack is loaded from the data directory before the member listens:
every start rebuilds the tree, the ledger and the indexes from the stored
cheeses (signatures are not checked again) and refuses a corrupted database
with one clear line. ``--reindex`` first rebuilds the database itself
(``cheesecoin.reindex``): every stored cheese that still parses is
re-validated from scratch, signatures included, into a fresh database that
replaces the old one (kept as ``stack.sqlite3.bak``); the member then starts
at the longest valid prefix of what it had.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage

from cheesecoin.core.cheese import NetworkError, load_network
from cheesecoin.member import links
from cheesecoin.p2p.features import FeaturesError, parse_features
from cheesecoin.p2p.manager import FEATURES, REFILL_INTERVAL, PeerManager
from cheesecoin.p2p.sync import STATS_INTERVAL
from cheesecoin.storage.peerfile import load_peers, save_peers
from cheesecoin.util.services import (
    ErrorFirstOptions,
    FatalStop,
    ListeningEndpoint,
    ServerService,
    integer_option,
    interface_option,
    server_endpoint,
)
from cheesecoin.wire.codec import ADDRESS_RE
from cheesecoin.wire.limits import API_PORT, MEMBER_PORT, MINER_PORT, PING_INTERVAL

MEMPOOL_SAVE_INTERVAL = 60.0
STORE_CHECK_INTERVAL = 10.0  # seconds between checks that the database is still there

log = Logger(namespace="cheesecoin.member")


def parse_host_port(name: str, value: str) -> Tuple[str, int]:
    """HOST:PORT (or [V6]:PORT) -> (host, port); UsageError naming --name otherwise."""
    text = str(value).strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c.isspace() for c in host) or len(host) > 255:
        raise usage.UsageError(f"--{name} must be HOST:PORT, such as 127.0.0.1:24331, not {text!r}")
    try:
        port = int(port_text, 10)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise usage.UsageError(
            f"--{name} must be HOST:PORT with a port from 1 to 65535, not {text!r}"
        )
    return host, port


class Options(ErrorFirstOptions):
    """Command-line options of ``twistd cheesemember``."""

    command = "cheesemember"
    synopsis = "[--tracker HOST:PORT ...] [--port P] [--data-dir DIR] [--mine] [options]"
    longdesc = (
        "Run a CheeseCoin member: a full node that keeps the cheese stack in its data "
        "directory, talks to other members, serves the HTTP API and the miner port, "
        "and mines with --mine."
    )
    optFlags = [
        [
            "mine",
            None,
            "Mine cheeses with every core (or --mining-workers), paying the member's wallet.",
        ],
        ["no-mine", None, "Do not mine (the default)."],
        ["require-tls", None, "Keep no peer whose HELLO does not list tls (encrypted links only)."],
        [
            "reindex",
            None,
            "Re-validate every stored cheese (signatures too) into a fresh database before starting; "
            "the old one is kept as stack.sqlite3.bak.",
        ],
    ]
    optParameters = [
        [
            "port",
            "p",
            MEMBER_PORT,
            "TCP port for other members (1-65535; 0 picks a free one, which is logged).",
        ],
        ["interface", "i", "0.0.0.0", "IP address the member port listens on."],
        [
            "data-dir",
            "d",
            "cheesecoin-data",
            "Directory of the stack database, mempool and wallet.",
        ],
        [
            "network",
            "n",
            None,
            "Network file (a JSON Blue Cheese); default: the cheesecoin network.",
        ],
        [
            "miner-address",
            None,
            None,
            "Address (64 hex characters) paid for mined cheeses; default: the member's wallet.",
        ],
        ["mining-workers", None, 0, "Mining workers (one per core is best); 0 uses every core."],
        ["api-port", None, API_PORT, "TCP port of the HTTP API and explorer."],
        ["api-interface", None, "127.0.0.1", "IP address the HTTP API listens on."],
        ["miner-port", None, MINER_PORT, "TCP port for external miners (WORK/SUBMIT)."],
        ["miner-interface", None, "127.0.0.1", "IP address the miner port listens on."],
        ["peers", None, 8, "Number of peers to keep connected."],
        ["max-inbound", None, 32, "Most inbound member connections at once."],
        ["max-per-ip", None, 64, "Most member connections from one IP address."],
        [
            "host",
            None,
            None,
            "Host name or address to advertise to the tracker (default: as the tracker sees us).",
        ],
        [
            "features",
            None,
            "all",
            "The features to list in HELLO: all (every feature of sections 5.1 to 5.3, "
            "tls included), rev2 (headers, compact, mempool, as a revision-2 member), "
            "none (version-1 relay and sync), or names separated by commas.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["connect"] = []
        self["pins"] = {}  # (host, port) -> node_id of --connect HOST:PORT@NODE_ID
        self["trackers"] = []
        self["tracker"] = None  # the first --tracker (for tools); every one is in "trackers"

    def opt_connect(self, value: str) -> None:
        """Connect to the member at HOST:PORT and keep connected; with @NODE_ID
        (64 hex), the identity it must prove over TLS (repeatable)."""
        address, node_id = links.parse_peer(value, parse_host_port)
        self["connect"].append(address)
        self["pins"].update(links.pins_of([(address, node_id)]))

    def opt_tracker(self, value: str) -> None:
        """A tracker to register with, HOST:PORT (repeatable: each is asked for peers;
        without any: alone, or --connect peers)."""
        self["trackers"].append(parse_host_port("tracker", value))
        self["tracker"] = self["trackers"][0]

    opt_t = opt_tracker

    def postOptions(self) -> None:
        if self["mine"] and self["no-mine"]:
            raise usage.UsageError("--mine and --no-mine contradict each other")
        self["port"] = integer_option("port", self["port"], 0, 65535)
        self["api-port"] = integer_option("api-port", self["api-port"], 0, 65535)
        self["miner-port"] = integer_option("miner-port", self["miner-port"], 0, 65535)
        self["mining-workers"] = integer_option("mining-workers", self["mining-workers"], 0, 1024)
        self["peers"] = integer_option("peers", self["peers"], 0, 1000)
        self["max-inbound"] = integer_option("max-inbound", self["max-inbound"], 0, 100000)
        self["max-per-ip"] = integer_option("max-per-ip", self["max-per-ip"], 1, 100000)
        for name in ("interface", "api-interface", "miner-interface"):
            self[name] = interface_option(name, self[name])
        try:
            without_tls, tls = links.split_tls(self["features"])
            self["feature-names"] = parse_features(without_tls) + ((links.TLS,) if tls else ())
        except FeaturesError as e:
            raise usage.UsageError(str(e))
        links.check_tls_options(self)
        host = self["host"]
        if host is not None and (
            not host.strip() or len(host) > 255 or any(c.isspace() for c in host)
        ):
            raise usage.UsageError(f"--host must be a host name or address, not {host!r}")
        address = self["miner-address"]
        if address is not None and not ADDRESS_RE.match(address):
            raise usage.UsageError(
                "--miner-address must be an address: 64 lowercase hex characters"
            )
        data_dir = str(self["data-dir"]).strip()
        if not data_dir:
            raise usage.UsageError("--data-dir must not be empty")
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise usage.UsageError(f"--data-dir {data_dir} exists and is not a directory")
        self["data-dir"] = os.path.abspath(data_dir)
        try:
            self["network-object"] = load_network(self["network"])
        except NetworkError as e:
            raise usage.UsageError(str(e))


class _MemberService(MultiService):
    """Stops every other part (ports, miner, tracker link, timers) and waits
    for them before the shutdown part saves the mempool and closes the stack,
    so nothing writes to a closed store."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdown: Optional[Service] = None

    def stopService(self) -> Deferred:
        Service.stopService(self)
        others = [s for s in reversed(list(self)) if s is not self.shutdown]
        done = gatherResults([maybeDeferred(s.stopService) for s in others], consumeErrors=True)
        done.addErrback(lambda f: log.failure("Error while stopping the member", f))
        if self.shutdown is not None:
            done.addBoth(lambda _: self.shutdown.stopService())
        return done


class _Shutdown(Service):
    """Saves the mempool and closes the stack when the member stops."""

    def __init__(self, node: Any, manager: PeerManager) -> None:
        self.node = node
        self.manager = manager
        self.events: Any = None  # the EventLog, whose streams end cleanly

    def save_mempool(self) -> None:
        try:
            self.node.save_mempool()
        except OSError as e:
            log.warn("Cannot save the mempool: {why}", why=e)

    def save_peers(self) -> None:
        """Keep the members that worked in the data directory (dialled first at the next start)."""
        if self.node.data_dir is None:
            return
        try:
            save_peers(self.node.data_dir, self.manager.addresses.to_save())
        except OSError as e:
            log.warn("Cannot save the address book: {why}", why=e)

    def save_state(self) -> None:
        self.save_mempool()
        self.save_peers()
        if self.node.data_dir is not None:
            links.save_pins_of(self.manager, self.node.data_dir)

    def stopService(self) -> None:
        super().stopService()
        if self.events is not None:
            self.events.close_all()
        self.manager.close_all()
        self.save_state()
        self.node.stack.close()
        log.info("Member stopped at height {height}", height=self.node.stack.height)


class StoreWatch:
    """Checks that the database file is still the one the member opened: a
    data directory deleted, moved or replaced while the member runs would
    otherwise go unnoticed (cheeses mined into deleted files, a new wallet at
    the next start). ``on_gone(reason)`` is called once when it is not."""

    def __init__(self, path: str, on_gone: Any) -> None:
        self.path = path
        self.on_gone = on_gone
        st = os.stat(path)
        self.identity = (st.st_dev, st.st_ino)
        self.gone = False

    def check(self) -> None:
        if self.gone:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            why = "is gone (its data directory was deleted or moved while the member ran)"
        except OSError as e:
            why = f"cannot be looked at ({e.strerror})"
        else:
            if (st.st_dev, st.st_ino) == self.identity:
                return
            why = "was replaced by another file while the member ran"
        self.gone = True
        self.on_gone(f"The database {self.path} {why}: stopping")


def _timer(parent: MultiService, name: str, interval: float, call: Any, clock: Any) -> None:
    timer = TimerService(interval, call)
    timer.clock = clock
    timer.setName(name)
    timer.setServiceParent(parent)


def makeService(config: Options, reactor: Any = reactor) -> MultiService:
    """The member: stack, node, peer manager, listeners, tracker link, timers,
    API, miner, all on ``reactor`` (twistd's; a test may pass its own)."""
    from cheesecoin.core.node import MemberNode
    from cheesecoin.storage.sqlite import CorruptStore, StorageError, open_stack

    network = config.get("network-object")
    if network is None:
        try:
            network = load_network(config["network"])
        except NetworkError as e:
            raise SystemExit(f"cheesemember: {e}")
    data_dir = config["data-dir"]
    identity, node_id = links.identity_node_id(config, data_dir)  # section 5.3, when tls is listed
    if config["reindex"]:
        from cheesecoin.storage.reindex import reindex

        try:
            result = reindex(
                data_dir, network, log=lambda line: log.warn("Reindex: {line}", line=line)
            )
        except (StorageError, OSError) as e:
            raise SystemExit(f"cheesemember: --reindex: {e}")
        log.info("{summary}", summary=result.summary()[0].upper() + result.summary()[1:])
    try:
        stack = open_stack(data_dir, network)
    except (StorageError, OSError) as e:
        # --reindex mends a damaged database, not a foreign file, another
        # network's stack or a directory we may not write: hint it only then.
        reindexable = isinstance(e, CorruptStore) and not config["reindex"]
        hint = (
            " (start with --reindex to rebuild it from the cheeses that are still readable)"
            if reindexable
            else ""
        )
        raise SystemExit(f"cheesemember: {e}{hint}")
    node = MemberNode(stack, data_dir=data_dir, node_id=node_id)
    fatal = FatalStop(reactor, log)

    def storage_failed(error: Exception) -> None:
        fatal(
            f"{str(error)[0].upper()}{str(error)[1:]}: the stack is kept on disk up to height "
            f"{node.stack.height}; stopping (start again once it can be written)"
        )

    node.storage_listeners.append(storage_failed)
    restored = node.load_mempool()
    log.info(
        "Loaded the stack of {network} from {dir}: height {height}, tip {tip} ({txs} pending transactions)",
        network=network.name,
        dir=data_dir,
        height=stack.height,
        tip=stack.tip.smell,
        txs=restored,
    )

    from cheesecoin.mining.port import MinerPortFactory
    from cheesecoin.storage.wallet import WalletError, member_address
    from cheesecoin.web.api import make_site
    from cheesecoin.web.events import HEARTBEAT, EventLog
    from cheesecoin.web.metrics import MemberMetrics

    try:
        miner_address = config["miner-address"] or member_address(data_dir)
    except WalletError as e:
        stack.close()
        raise SystemExit(f"cheesemember: the member's wallet: {e} (or give --miner-address)")

    top = _MemberService()
    manager = PeerManager(
        node,
        reactor,
        verify_in_threads=True,
        target_peers=config["peers"],
        max_inbound=config["max-inbound"],
        max_per_ip=config["max-per-ip"],
        features=config.get("feature-names", FEATURES),
    )
    links.install_tls(config, manager, identity, data_dir)
    for host, port in config["connect"]:
        manager.add_persistent(host, port)
    saved, why = load_peers(data_dir)
    if why is not None:
        log.warn("Ignoring the saved address book: {why}", why=why)
    elif saved:
        log.info(
            "Loaded {n} members from the saved address book: they are dialled first",
            n=manager.addresses.load_saved(saved),
        )
    shutdown = _Shutdown(node, manager)  # stopped after every other part
    shutdown.setName("shutdown")
    shutdown.setServiceParent(top)
    top.shutdown = shutdown

    def listening(port: IListeningPort) -> None:
        manager.listen_port = port.getHost().port
        log.info(
            "Member {node_id} listening on {host}:{port} (network {network}, height {height}, target {peers} peers)",
            node_id=node.node_id,
            host=config["interface"],
            port=manager.listen_port,
            network=network.name,
            height=stack.height,
            peers=config["peers"],
        )
        manager.refill()

    def serve(name: str, what: str, prefix: str, factory: Any, on_listen: Any = None) -> None:
        """Listen on config[prefix + "port"] at config[prefix + "interface"]."""
        interface = config[prefix + "interface"]

        def listened(port: IListeningPort) -> None:
            if on_listen is not None:
                on_listen(port)
            else:
                log.info(
                    "{what} on {host}:{port}", what=what, host=interface, port=port.getHost().port
                )

        endpoint = server_endpoint(reactor, interface, config[prefix + "port"])
        service = ServerService(
            ListeningEndpoint(endpoint, listened), factory, "cheesemember", what
        )
        service.setName(name)
        service.setServiceParent(top)

    serve("member", "members", "", manager.factory, listening)
    metrics = MemberMetrics(node)
    manager.traffic = metrics.traffic
    events = shutdown.events = EventLog(node, reactor)
    serve("api", "HTTP API", "api-", make_site(node, metrics, events))
    serve("miner-port", "Miner port", "miner-", MinerPortFactory(node, miner_address, reactor))

    links.start_trackers(config, manager, top, reactor)

    if config["mine"]:
        from cheesecoin.mining.service import MiningService

        miner = MiningService(node, miner_address, config["mining-workers"], reactor)
        miner.setName("mining")
        miner.setServiceParent(top)
        log.info("Mining for {address}", address=miner_address)

    _timer(top, "ping", PING_INTERVAL, manager.ping_all, reactor)
    _timer(top, "compare-stacks", STATS_INTERVAL, manager.compare_stacks, reactor)
    _timer(top, "refill", REFILL_INTERVAL, manager.tick, reactor)
    _timer(top, "save-state", MEMPOOL_SAVE_INTERVAL, shutdown.save_state, reactor)
    _timer(top, "event-heartbeat", HEARTBEAT, events.heartbeat, reactor)
    _timer(
        top, "watch-store", STORE_CHECK_INTERVAL, StoreWatch(stack.store.path, fatal).check, reactor
    )
    top.node = node  # for tests and tools
    top.manager = manager
    return top
