"""The seams of the web side, declared once as ``typing.Protocol``s: what the
HTTP API, the event stream and the metrics need of the member's node (a
``cheesecoin.core.node.MemberNode``) and of each other.

- ``ApiNode``: what the endpoints of ``cheesecoin.web.api`` ask the node;
- ``EventNode``: what ``cheesecoin.web.events.EventLog`` listens to and reads;
- ``MetricsNode``: what ``cheesecoin.web.metrics.MemberMetrics`` listens to
  and reads at each scrape;
- ``MetricsSource``: what ``GET /metrics`` serves (``MemberMetrics``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from cheesecoin.core.interfaces import (
    CheeseListener,
    MinerView,
    RefusalListener,
    TipListener,
    TxListener,
)
from cheesecoin.core.mempool import Mempool
from cheesecoin.core.stack import CheeseStack


class ApiNode(Protocol):
    """The node as the HTTP API reads it; its only write is ``submit_tx``."""

    @property
    def stack(self) -> CheeseStack: ...

    @property
    def mempool(self) -> Mempool: ...

    def status(self) -> Dict[str, Any]: ...

    def health(self) -> Dict[str, Any]: ...

    def balance(self, address: str) -> Dict[str, Any]: ...

    def address_info(
        self, address: str, count: int, before: Optional[int] = None
    ) -> Dict[str, Any]: ...

    def tx_status(self, tx_id: str) -> Optional[Dict[str, Any]]: ...

    def submit_tx(self, tx: Any, source: Any = None) -> Tuple[str, bool]:
        """Validate a transaction (a JSON value not yet checked) into the mempool."""
        ...


class EventNode(Protocol):
    """The node as the event stream hears it: tip and transaction listeners."""

    @property
    def stack(self) -> CheeseStack: ...

    @property
    def tip_listeners(self) -> List[TipListener]: ...

    @property
    def tx_listeners(self) -> List[TxListener]: ...


class MetricsNode(Protocol):
    """The node as the metrics hear and read it."""

    @property
    def stack(self) -> CheeseStack: ...

    @property
    def mempool(self) -> Mempool: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def cheese_listeners(self) -> List[CheeseListener]: ...

    @property
    def refusal_listeners(self) -> List[RefusalListener]: ...

    @property
    def tip_listeners(self) -> List[TipListener]: ...

    @property
    def miner(self) -> Optional[MinerView]: ...

    def peers_info(self) -> List[Dict[str, Any]]: ...


class MetricsSource(Protocol):
    """What ``GET /metrics`` serves."""

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        ...
