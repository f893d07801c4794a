"""Twisted service pieces shared by the tracker and member taps."""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any, Callable, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTCP,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer


class ErrorFirstOptions(usage.Options):
    """Options whose usage errors are said first, on stderr, in one line.

    twistd answers a bad option with the whole usage text and only then the
    error, at its end; a person reads the top. So the error comes first (on
    stderr, where errors go) and, as twistd prints it, last.
    """

    command = "?"  # the plugin name, for the message

    def parseOptions(self, options: Any = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            print(f"twistd {self.command}: error: {e}", file=sys.stderr, flush=True)
            raise


def integer_option(name: str, value: Any, lo: int, hi: Optional[int] = None) -> int:
    """The integer value of option --name, from lo (to hi); UsageError otherwise."""
    text = str(value).strip()
    try:
        number = int(text, 10)
    except ValueError:
        number = None
    if number is None or number < lo or (hi is not None and number > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise usage.UsageError(f"--{name} must be an integer {bound}, not {text!r}")
    return number


def interface_option(name: str, value: Any) -> str:
    """Option --name as an IP address in its normal form; UsageError otherwise."""
    text = str(value).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise usage.UsageError(
            f"--{name} must be an IP address such as 0.0.0.0 or 127.0.0.1, not {text!r}"
        )


def server_endpoint(
    reactor: IReactorTCP, interface: str, port: int, backlog: int = 50
) -> IStreamServerEndpoint:
    """A TCP server endpoint on ``interface`` (an IP address, v4 or v6)."""
    tcp = TCP6ServerEndpoint if ipaddress.ip_address(interface).version == 6 else TCP4ServerEndpoint
    return tcp(reactor, port, backlog=backlog, interface=interface)


@implementer(IStreamServerEndpoint)
class ListeningEndpoint:
    """Wraps an endpoint and calls ``on_listen(port)`` once it actually listens."""

    def __init__(
        self, endpoint: IStreamServerEndpoint, on_listen: Callable[[IListeningPort], Any]
    ) -> None:
        self._endpoint = endpoint
        self._on_listen = on_listen

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            self._on_listen(port)
            return port

        return self._endpoint.listen(protocolFactory).addCallback(listening)


class ServerService(StreamServerEndpointService):
    """A listening service whose port, if it cannot be opened, stops the start
    with one clear line (``PROGRAM: cannot listen [for WHAT] on HOST:PORT: why``)
    instead of a traceback or running on without the port."""

    _raiseSynchronously = True

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        program: str,
        what: str = "",
    ) -> None:
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


class FatalStop:
    """Stops the process once, with a non-zero exit status, for a fault that
    running on cannot mend (a full disk, a data directory deleted under us).

    twistd itself always exits 0 after the reactor stops, so the status is
    set by an "after shutdown" trigger: every service has stopped cleanly
    (stores closed, logs written) by then.
    """

    EXIT_CODE = 3

    def __init__(self, reactor: Any, log: Logger, exit: Callable[[int], None] = os._exit) -> None:
        # IReactorCore (triggers, stop) and IReactorTime (callLater) at once
        self.reactor = reactor
        self.log = log
        self.reason: Optional[str] = None
        self._exit = exit

    def __call__(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self.log.critical("{reason}", reason=reason)
        self.reactor.addSystemEventTrigger("after", "shutdown", self._exit_now)
        self.reactor.callLater(0, self._stop)

    def _stop(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    def _exit_now(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        self._exit(self.EXIT_CODE)
