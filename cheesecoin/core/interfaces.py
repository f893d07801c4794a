"""The seams of the core (pure, no Twisted): what the core's parts need of
their collaborators, declared once as ``typing.Protocol``s.

- ``CheeseStore``: where a ``CheeseStack`` keeps cheese bodies, invalid
  marks and its tip (``cheesecoin.core.memstore.MemoryStore`` in memory,
  ``cheesecoin.storage.sqlite.SqliteStore`` on disk);
- ``StackView``: what ``cheesecoin.core.serving.StackServing`` reads of the
  stack it serves from;
- ``LinkChecker``: what a ``cheesecoin.core.headers.HeaderChain`` checks its
  headers against (the stack);
- ``MinerView`` and ``PeersView``: what a ``MemberNode`` reports of the
  miner and of the peers, registered by the services that own them
  (``MemberNode.register_miner``, ``MemberNode.register_peers``);
- ``Source``: whoever handed the node a cheese or a transaction;
- the listeners a ``MemberNode`` tells of changes;
- ``ChainNode``: what every service that follows the stack uses of a
  ``MemberNode`` (mining's ``MiningNode`` and the peer layer's ``PeerNode``
  extend it).
"""

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Tuple,
)

from cheesecoin.core.errors import InvalidCheese, StorageError
from cheesecoin.core.tree import AddResult, Node

if TYPE_CHECKING:  # the node's parts, which import this module
    from cheesecoin.core.cheese import Network
    from cheesecoin.core.mempool import Mempool
    from cheesecoin.core.stack import CheeseStack

# What a store's ``load`` returns: (cheese, info_hash) of every stored cheese in
# the order they were stored, the stored tip and the invalid marks.
Loaded = Tuple[Iterable[Tuple[dict, str]], Optional[str], Dict[str, str]]


class CheeseStore(Protocol):
    """Cheese bodies, invalid marks and the tip of a ``CheeseStack``.

    ``commit`` writes one accepted cheese (or none) with the invalid marks
    and the tip it leads to, atomically. While ``batch_depth`` > 0 commits
    stay atomic but need not be durable; ``flush`` makes them durable (the
    end of ``CheeseStack.batch``)."""

    tip: Optional[str]
    batch_depth: int

    def load(self) -> Loaded: ...

    def get(self, smell: str) -> Optional[dict]: ...

    def get_text(self, smell: str, cache: bool = True) -> Optional[str]: ...

    def text_slice(self, smell: str, from_end: int, length: int) -> Optional[str]: ...

    def commit(
        self, added: List[Tuple[Node, dict]], invalid: List[Tuple[str, str]], tip: Optional[str]
    ) -> None: ...

    def address_rows(
        self, address: str, before: Optional[int] = None
    ) -> Iterator[Tuple[int, int, str]]: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def stored_body(store: CheeseStore, smell: str) -> dict:
    """The body of a cheese the store must hold (one of the tree's); StorageError if lost."""
    body = store.get(smell)
    if body is None:
        raise StorageError(f"the store lost the cheese {smell}")
    return body


def stored_text(store: CheeseStore, smell: str) -> str:
    """The canonical text of a cheese the store must hold, not cached; StorageError if lost."""
    text = store.get_text(smell, cache=False)
    if text is None:
        raise StorageError(f"the store lost the cheese {smell}")
    return text


class StackView(Protocol):
    """What the serving side reads of a ``CheeseStack``: its tree, best stack,
    store and txid index."""

    nodes: Dict[str, Node]
    main: List[Node]
    store: CheeseStore
    tx_index: Dict[str, int]

    def on_main(self, node: Node) -> bool: ...


class LinkChecker(Protocol):
    """What a ``cheesecoin.core.headers.HeaderChain`` needs of the stack its
    headers extend: the known nodes and rules 2 to 4 against a parent."""

    @property
    def nodes(self) -> Dict[str, Node]: ...

    def check_link(self, cheese: dict, parent: Node) -> None: ...


class MinerView(Protocol):
    """The miner a member runs, as the API reports it."""

    @property
    def mining(self) -> bool: ...

    def hashrate(self) -> float: ...


class PeersView(Protocol):
    """The member's peers, as the API reports them."""

    def peers_info(self) -> List[dict]: ...

    def sync_status(self) -> Optional[str]:
        """Why the node is not ready (a download from a peer with more work), or None."""
        ...


# Whoever handed the node a cheese or a transaction: the peer connection it came
# from (a ``cheesecoin.p2p.protocol.MemberProtocol``), ``"api"``, ``MINED``
# (``cheesecoin.core.node``), "wallet", a download's peer, or None. The core
# only compares it and passes it on (listeners skip the sender), so any object.
Source = object

TipListener = Callable[[AddResult, Source], None]
TxListener = Callable[[str, dict, Source], None]
CheeseListener = Callable[[AddResult, Source], None]
RefusalListener = Callable[[InvalidCheese, Source], None]
StorageListener = Callable[[Exception], None]


class ChainNode(Protocol):
    """What a service that follows the stack uses of the member's node (a
    ``cheesecoin.core.node.MemberNode``): its stack, mempool and network, the
    listeners that tell it of changes, and ``submit_cheese``."""

    @property
    def stack(self) -> CheeseStack: ...

    @property
    def mempool(self) -> Mempool: ...

    @property
    def network(self) -> Network: ...

    @property
    def tip_listeners(self) -> List[TipListener]: ...

    @property
    def tx_listeners(self) -> List[TxListener]: ...

    def submit_cheese(
        self,
        cheese: Any,
        source: Source = None,
        check_signatures: bool = True,
        ihash: Optional[str] = None,
    ) -> AddResult:
        """Validate and add a cheese; raises InvalidCheese (or StorageError)."""
