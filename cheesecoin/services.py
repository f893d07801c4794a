"""Twisted service pieces shared by the tracker and member taps."""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ListeningEndpoint:
    """Wraps an endpoint and calls ``on_listen(port)`` once it actually listens."""

    def __init__(self, endpoint: IStreamServerEndpoint, on_listen: Callable[[IListeningPort], Any]) -> None:
        self._endpoint = endpoint
        self._on_listen = on_listen

    def listen(self, protocolFactory: Any) -> Deferred:
        def listening(port: IListeningPort) -> IListeningPort:
            self._on_listen(port)
            return port

        return self._endpoint.listen(protocolFactory).addCallback(listening)


class ServerService(StreamServerEndpointService):
    """A listening service whose port, if it cannot be opened, stops the start
    with one clear line (``PROGRAM: cannot listen [for WHAT] on HOST:PORT: why``)
    instead of a traceback or running on without the port."""

    _raiseSynchronously = True

    def __init__(self, endpoint: IStreamServerEndpoint, factory: Any, program: str, what: str = "") -> None:
        super().__init__(endpoint, factory)
        self.program = program
        self.what = what

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            purpose = f" for {self.what}" if self.what else ""
            where = f"{e.interface or '0.0.0.0'}:{e.port}"
            raise SystemExit(f"{self.program}: cannot listen{purpose} on {where}: {e.socketError}")
