"""The seams of mining, declared once as ``typing.Protocol``s: what the
built-in miner (``cheesecoin.mining.service``), the miner port
(``cheesecoin.mining.port``), the template feed and the nonce searchers need
of the member's node, of the reactor and of each other.

- ``MiningNode``: the node a miner mines on (a ``cheesecoin.core.node.MemberNode``);
- ``Timer``: timed calls (an ``IReactorTime``: the reactor, a ``task.Clock``);
- ``MiningReactor``: a ``Timer`` that also spawns worker processes;
- ``Searcher``: a nonce search (``ThreadSearcher``, ``ProcessSearcher``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IProcessProtocol, IProcessTransport

from cheesecoin.core.interfaces import ChainNode, MinerView
from cheesecoin.mining.jobs import Job


class MiningNode(ChainNode, Protocol):
    """The node as mining uses it: its stack and mempool for templates, its
    listeners for template changes, ``submit_cheese`` for a found cheese, and
    its clock for the templates' timestamps."""

    @property
    def clock(self) -> Callable[[], float]: ...

    def register_miner(self, miner: MinerView) -> None: ...


class Timer(Protocol):
    """Timed calls: what ``IReactorTime`` provides."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> IDelayedCall: ...


class MiningReactor(Timer, Protocol):
    """The reactor the built-in miner runs on: timed calls and worker processes
    (``IReactorProcess``); the thread searcher runs on its CPU thread pool."""

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: str,
        args: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
    ) -> IProcessTransport: ...


class Searcher(Protocol):
    """A nonce search: one job at a time, restarted by each ``search``."""

    def search(self, job: Job, start: int = 0) -> None: ...

    def pause(self) -> None: ...

    def busy(self) -> int: ...

    def shutdown(self) -> "Deferred[None]": ...
