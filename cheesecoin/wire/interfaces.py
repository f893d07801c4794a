"""The seam of the line transport, declared once: what ``JsonLineProtocol``
(``cheesecoin.wire.lineproto``) needs of the transport it is connected to.

Twisted's ``ITransport`` has only writing, closing and the addresses; the
back-pressure (``registerProducer``, ``pauseProducing``...) and
``abortConnection`` are on the TCP and TLS transports (and on the tests'
``StringTransport`` and the simulator's ``SimTransport``), so the protocol
types its transport by this ``typing.Protocol`` instead.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IAddress, IPushProducer


class LineTransport(Protocol):
    """A connected stream transport that is a push producer and a consumer."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...
