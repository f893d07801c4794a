"""The seams of the peer layer: what each part needs of the others, declared once.

Each part of ``cheesecoin.p2p`` gets its collaborators through its
constructor, typed by one of these ``typing.Protocol`` classes (as
tahoe-lafs declares its interfaces in one ``interfaces.py``); the peer
manager builds the parts in order and connects the few that need each other
(``Sync`` and ``Relay``, the compact parts) with typed setters. The
connection (``MemberProtocol``) and its states need of the member side only
``PeerHost``. Back-references to the concrete classes are imported for type
checking alone (as hathor-core does), so that there is no import circle.

| Protocol        | provided by                      | used by                              |
|-----------------|----------------------------------|--------------------------------------|
| PeerNode        | MemberNode (cheesecoin.core)     | Sync, Relay, CompactRelay,           |
|                 |                                  | CompactModes, Inventory, StackServer,|
|                 |                                  | MempoolExchange, PeerManager         |
| DownloadContext | Sync                             | Download, HeadersDownload            |
| PeerDirectory   | PeerManager                      | Sync, Relay, CompactModes, Inventory,|
|                 |                                  | MempoolExchange, HeadersDownload     |
| ConnectionPool  | PeerManager                      | Dialler, BanList                     |
| RelayView       | Relay                            | CompactRelay, CompactModes, Sync,    |
|                 |                                  | MempoolExchange                      |
| Downloads       | Sync                             | Relay, CompactRelay, downloads       |
| CompactView     | CompactRelay                     | Relay, CompactModes                  |
| HeaderModes     | CompactModes                     | Relay                                |
| TxAnnouncer     | Inventory                        | Relay                                |
| MempoolView     | MempoolExchange                  | Relay, Inventory                     |
| PeerHost        | PeerManager                      | MemberProtocol and its states, tls   |
| PeerSink        | PeerManager                      | TrackerLink                          |
| PeerSource      | TrackerLink (the simulator's)    | Dialler                              |
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import (
    TYPE_CHECKING,
    AbstractSet,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Protocol,
    Set,
    Tuple,
)

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from cheesecoin.core.interfaces import ChainNode, Source
from cheesecoin.util.addresses import Address

if TYPE_CHECKING:
    from cheesecoin.core.errors import InvalidCheese
    from cheesecoin.core.interfaces import PeersView
    from cheesecoin.core.tree import AddResult
    from cheesecoin.p2p.download import BaseDownload
    from cheesecoin.p2p.protocol import MemberProtocol
    from cheesecoin.p2p.serving import StackServer
    from cheesecoin.p2p.tls import TlsPolicy

__all__ = [
    "Address",
    "CompactView",
    "ConnectionPool",
    "DownloadContext",
    "Downloads",
    "HeaderModes",
    "MempoolView",
    "PeerDirectory",
    "PeerHost",
    "PeerNode",
    "PeerSink",
    "PeerSource",
    "RelayView",
    "Traffic",
    "TxAnnouncer",
]

Traffic = Callable[[str, str, int], None]  # (direction, message type, bytes): the metrics hook


class PeerNode(ChainNode, Protocol):
    """What the peer layer uses of the member's node (a ``core.node.MemberNode``):
    its stack, mempool and network, its identity, the two ways in, and the
    listeners and registration by which it hears of the node and reports to it."""

    @property
    def node_id(self) -> str: ...

    def submit_tx(self, tx: Any, source: Source = None) -> Tuple[str, bool]:
        """Validate and add a transaction: (tx_id, whether it is new); raises InvalidTx."""

    def tx_status(self, tx_id: str) -> Optional[Dict[str, Any]]:
        """Where a transaction is (mempool or best stack), or None."""

    def storage_failed(self, error: Exception) -> None:
        """The store failed outside ``submit_cheese``: the node stops taking cheeses."""

    def register_peers(self, view: PeersView) -> None:
        """What the node reports of its peers (the peer manager)."""


class PeerDirectory(Protocol):
    """The handshaken peers and what we list in our HELLO."""

    @property
    def peers(self) -> Dict[str, MemberProtocol]:
        """node_id -> handshaken connection."""

    @property
    def features(self) -> Tuple[str, ...]:
        """The features this member lists (sections 5.1, 5.2, 5.3)."""

    def delivered(self, proto: MemberProtocol, count: int) -> None:
        """``proto`` gave us ``count`` new cheeses (protected from eviction)."""


class ConnectionPool(Protocol):
    """Every open connection, for the parts that dial, count and ban."""

    @property
    def peers(self) -> Dict[str, MemberProtocol]:
        """node_id -> handshaken connection."""

    @property
    def connections(self) -> Set[MemberProtocol]:
        """Every open member connection, handshaken or not."""

    @property
    def target_peers(self) -> int:
        """How many peers the member keeps."""

    def outbound_protocol(self, address: Address) -> MemberProtocol:
        """The protocol of a connection we dial to ``address``."""


class RelayView(Protocol):
    """What the relay of pushed cheeses offers the parts that receive them otherwise."""

    @property
    def pending(self) -> Dict[str, dict]:
        """Cheeses whose validation waits (smell -> cheese): GET_TXS and GET_COMPACT."""

    def relayed(self, smell: str) -> Optional[dict]:
        """A cheese sent on before validation, being validated or lately refused."""

    def already_have(self, proto: MemberProtocol, smell: Any) -> bool:
        """Whether ``smell`` is a valid cheese we have (the peer then has it too)."""

    def note_holder(self, proto: MemberProtocol, smell: str) -> None:
        """``proto`` announced ``smell``: it is not sent it back."""

    def check_header_link(self, proto: MemberProtocol, header: dict) -> None:
        """Rules 2 to 4 of a header against its parent, when we hold it."""

    def relay_early(self, source: MemberProtocol, cheese: dict, line: bytes) -> bool:
        """Send a rebuilt compact cheese on before its validation; whether it goes."""

    def receive_cheese(
        self,
        proto: MemberProtocol,
        cheese: dict,
        invalid_points: Optional[int] = None,
        ihash: Optional[str] = None,
    ) -> AddResult:
        """Validate and add a cheese a peer sent."""

    def relay_batch(self, source: Source) -> AbstractContextManager[None]:
        """Within it new best cheeses are collected and only the last few announced."""

    def send_mempool(self, proto: MemberProtocol) -> None:
        """Push our mempool to a peer without the mempool exchange."""


class Downloads(Protocol):
    """Starting a sync, for the parts that find a peer has more than we do."""

    def start_download(self, proto: MemberProtocol, reason: str) -> Optional[BaseDownload]:
        """Download ``proto``'s stack (one download at a time); the download or None."""

    def maybe_sync(self) -> Optional[BaseDownload]:
        """Start a download from the peer with the most work, if it has more than us."""


class DownloadContext(Protocol):
    """What a download (``download.BaseDownload`` and its two kinds) needs of the
    sync that runs it: the node, clock, log and peers, the count of running
    downloads, its end, and how downloaded cheeses are checked and applied."""

    node: PeerNode
    clock: IReactorTime
    log: Logger
    directory: PeerDirectory
    running: int  # downloads started and not finished

    @property
    def idle_seconds(self) -> float:
        """How long a peer that failed a download rests."""

    def ended(self, download: BaseDownload) -> None:
        """A download has finished."""

    def verify_signatures(self, cheeses: List[dict], with_hashes: bool = False) -> Deferred:
        """Deferred set of the indices of ``cheeses`` well formed and signed."""

    def apply_chunk(
        self,
        proto: MemberProtocol,
        cheeses: List[dict],
        signed: AbstractSet[int] = frozenset(),
        hashes: Optional[List[str]] = None,
    ) -> Tuple[int, Optional[InvalidCheese]]:
        """Add downloaded cheeses in one batch; (added, the first InvalidCheese or None)."""


class CompactView(Protocol):
    """Compact relay (section 5.1), for the relay and the compact modes."""

    def announcement(self, cheese: dict) -> bytes:
        """The ANNOUNCE_COMPACT line of ``cheese``."""

    def announced_header(self, proto: MemberProtocol, header: Any) -> Optional[dict]:
        """The checked header of an announced cheese worth fetching, or None."""

    def receive(self, proto: MemberProtocol, msg: dict) -> None:
        """ANNOUNCE_COMPACT (or a COMPACT reply): rebuild the cheese."""


class HeaderModes(Protocol):
    """The compact modes (section 5.2), for the relay."""

    def wants_header(self, proto: MemberProtocol) -> bool:
        """Whether a new best cheese goes to ``proto`` as ANNOUNCE_HEADER."""

    def header_line(self, cheese: dict) -> bytes:
        """The ANNOUNCE_HEADER line of ``cheese``."""

    def brought_first(self, proto: MemberProtocol) -> None:
        """``proto`` was the first to bring us a new best cheese."""


class TxAnnouncer(Protocol):
    """Transactions by inventory (section 5.2), for the relay."""

    def announce(
        self, tx_id: str, peers: List[MemberProtocol], source: Optional[MemberProtocol] = None
    ) -> None:
        """Queue ``tx_id`` for the ``inv`` peers among ``peers`` that do not hold it."""


class MempoolView(Protocol):
    """The mempool exchange (section 5.1), for the relay and the inventory."""

    def on_tip(self) -> None:
        """Our tip moved: a peer we could not exchange with yet, maybe now."""

    def take_tx(self, proto: MemberProtocol, tx: Any) -> Optional[Tuple[str, str]]:
        """Submit one fetched transaction; the (rule, message) that refused it, or None."""


class PeerHost(Protocol):
    """What a member connection and its states need of the member side: who we
    are, the clock, what we tell peers, and one named call per thing a peer's
    message asks of us (as ``irc_PRIVMSG`` calls ``privmsg``)."""

    clock: IReactorTime
    log: Logger
    traffic: Optional[Traffic]
    tls: Optional[TlsPolicy]
    server: StackServer

    @property
    def peers(self) -> Dict[str, MemberProtocol]:
        """node_id -> handshaken connection."""

    @property
    def features(self) -> Tuple[str, ...]:
        """The features this member lists."""

    @property
    def node_id(self) -> str:
        """Our node_id (a HELLO with it is a connection to ourselves)."""

    @property
    def network_smell(self) -> str:
        """Our network's smell (a HELLO with another is refused)."""

    # -- the connection's life --------------------------------------------------------

    def hello_message(self) -> dict:
        """Our HELLO."""

    def connection_made(self, proto: MemberProtocol) -> None:
        """A connection opened (either direction)."""

    def connection_lost(self, proto: MemberProtocol) -> None:
        """A connection closed."""

    def connected_to_self(self, proto: MemberProtocol) -> None:
        """A HELLO with our own node_id: that address is ours."""

    def accept_peer(self, proto: MemberProtocol) -> bool:
        """One connection per node_id: whether this one is kept."""

    def peer_ready(self, proto: MemberProtocol) -> None:
        """The handshake is done."""

    def ban(self, proto: MemberProtocol, why: str) -> None:
        """Misbehaviour reached the ban score."""

    # -- what peers ask of us and tell us -----------------------------------------------

    def already_have(self, proto: MemberProtocol, smell: Any) -> bool:
        """An announced cheese we have: ignored before its line is decoded."""

    def consensus_asked(self, proto: MemberProtocol) -> None:
        """CONSENSUS: compare stacks with every peer (rate limited)."""

    def peers_for(self, asker: Optional[MemberProtocol]) -> List[dict]:
        """The PEERS entries for a GET_PEERS."""

    def add_addresses(self, peers: List[Any], source: str) -> int:
        """Learn addresses from a PEERS list."""

    def receive_cheese(self, proto: MemberProtocol, cheese: dict) -> None:
        """ANNOUNCE."""

    def receive_tx(self, proto: MemberProtocol, tx: dict) -> None:
        """TX."""

    def receive_compact(self, proto: MemberProtocol, msg: dict) -> None:
        """ANNOUNCE_COMPACT."""

    def receive_inv(self, proto: MemberProtocol, msg: dict) -> None:
        """INV."""

    def receive_header(self, proto: MemberProtocol, msg: dict) -> None:
        """ANNOUNCE_HEADER."""

    def compact_mode(self, proto: MemberProtocol, high_bandwidth: bool) -> None:
        """SEND_COMPACT."""

    def compact_of(self, smell: str) -> Optional[dict]:
        """The COMPACT reply for GET_COMPACT, or None."""

    def mempool_txids(self) -> List[str]:
        """The MEMPOOL reply's txids."""

    def find_txs(self, txids: List[str], smell: Optional[str]) -> List[dict]:
        """The TXS reply's transactions."""


class PeerSource(Protocol):
    """Somewhere more members can be found (the tracker link)."""

    def request_peers(self) -> object:
        """Ask for members; their addresses come back by ``add_addresses`` (what it
        returns is not used)."""


class PeerSink(Protocol):
    """What the tracker link needs of the peer manager: what to register, and
    where the members it hears of go."""

    clock: IReactorTime
    listen_port: Optional[int]
    tls: Optional[TlsPolicy]

    @property
    def features(self) -> Tuple[str, ...]:
        """The features this member lists."""

    @property
    def node_id(self) -> str:
        """Our node_id (registered as our identity key when we list tls)."""

    def add_addresses(self, peers: List[Any], source: str) -> int:
        """Learn addresses from a PEERS list."""

    def add_peer_source(self, source: PeerSource) -> None:
        """Something that can find more members."""
