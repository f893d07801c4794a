# The member's link to the tracker (docs/protocol.md section 2), client side.
#
# Messages it sends: {"type":"REGISTER","port":P[,"host":H][,"node_id":ID]} on
# every (re)connect (node_id when the member lists tls: its identity key),
# {"type":"GET_PEERS"} when the member needs peers, and {"type":"PING"} every 30 s.
# It reads PEERS (fed to the peer manager), PONG, OK and ERROR (logged); it never
# answers an ERROR. The node_ids a PEERS lists are pinned (section 5.3) when the
# member lists tls.
"""``TrackerLink``: a ``ClientService`` that keeps the member registered.

A member may have several (``--tracker`` is repeatable): each registers on
its own and is asked for peers; one that is down is logged once, retried
with backoff, and said again only when it is back, while the others serve.
"""

from __future__ import annotations

from typing import Optional

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from cheesecoin.p2p.interfaces import PeerSink
from cheesecoin.wire.limits import PING_INTERVAL
from cheesecoin.wire.lineproto import JsonLineProtocol


class TrackerClientProtocol(JsonLineProtocol):
    """One connection to the tracker: REGISTER, then PING every 30 s."""

    def __init__(self, link: "TrackerLink") -> None:
        super().__init__()
        self.link = link
        self.registered = False
        self._pinger: Optional[LoopingCall] = None

    def connectionMade(self) -> None:
        self.link.connected(self)
        self.send(self.link.register_message())
        self._pinger = LoopingCall(self.send, {"type": "PING"})
        self._pinger.clock = self.link.clock
        self._pinger.start(PING_INTERVAL, now=False)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closing = True
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self.link.disconnected(self)

    def msg_PEERS(self, msg: dict) -> None:
        peers = msg.get("peers")
        if not isinstance(peers, list):
            return
        first = not self.registered
        self.registered = True
        self.link.offered(peers[:100], len(peers), first)

    def msg_PONG(self, msg: dict) -> None:
        pass

    def msg_OK(self, msg: dict) -> None:
        pass

    def msg_ERROR(self, msg: dict) -> None:
        self.link.log.warn(
            "The tracker says: ERROR {code} {text}",
            code=str(msg.get("code"))[:40],
            text=str(msg.get("message", ""))[:200],
        )


class _TrackerFactory(Factory):
    noisy = False

    def __init__(self, link: "TrackerLink") -> None:
        self.link = link

    def buildProtocol(self, addr: Optional[IAddress]) -> TrackerClientProtocol:
        return TrackerClientProtocol(self.link)


@provider(ILogObserver)
def _without_retry_lines(event: dict) -> None:
    """Forward ClientService's log events except its own "Scheduling retry"
    lines, which TrackerLink replaces with one that names the tracker."""
    if str(event.get("log_format", "")).startswith("Scheduling retry"):
        return
    globalLogPublisher(event)


class _TrackerService(ClientService):
    """The reconnecting service of the tracker link (its retry lines are ours)."""

    _log = Logger(namespace="cheesecoin.tracker_client", observer=_without_retry_lines)


class TrackerLink:
    """Keeps a connection to the tracker (reconnecting with backoff) and feeds
    the PEERS it hears to ``manager`` (a PeerManager); ``service`` is the
    ClientService to add to the member's MultiService."""

    log = Logger()

    def __init__(
        self,
        manager: PeerSink,
        host: str,
        port: int,
        advertised_host: Optional[str] = None,
        reactor: Optional[IReactorTime] = None,  # default: the manager's (they share one)
        endpoint: Optional[IStreamClientEndpoint] = None,
    ) -> None:
        reactor = reactor if reactor is not None else manager.clock
        self.manager = manager
        self.clock = reactor
        self.address = f"{host}:{port}"
        self.advertised_host = advertised_host
        self.protocol: Optional[TrackerClientProtocol] = None
        self.down = False  # said once that it is unreachable; said again when it is back
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, host, port, timeout=10)
        backoff = backoffPolicy(initialDelay=1.0, maxDelay=60.0)

        def retry_policy(failed_attempts: int) -> float:
            delay = backoff(failed_attempts)
            if not self.down:
                self.down = True
                self.log.warn(
                    "Cannot reach the tracker at {tracker}, retrying in {delay:.0f} s "
                    "(and then with backoff, quietly, up to {most:.0f} s)",
                    tracker=self.address,
                    delay=delay,
                    most=60.0,
                )
            return delay

        self.service = _TrackerService(
            endpoint, _TrackerFactory(self), retryPolicy=retry_policy, clock=reactor
        )
        self.service.setName(f"tracker-client {self.address}")
        manager.add_peer_source(self)

    def register_message(self) -> dict:
        msg: dict = {"type": "REGISTER", "port": self.manager.listen_port}
        if self.advertised_host:
            msg["host"] = self.advertised_host
        if self.manager.tls is not None and "tls" in self.manager.features:
            msg["node_id"] = self.manager.node_id  # its identity key (sections 2 and 5.3)
        return msg

    def offered(self, peers: list, count: int, first: bool) -> None:
        """A PEERS from the tracker: ``peers`` (its first 100 of ``count``) go to
        the manager; the first one after connecting says we are registered."""
        if first:
            self.log.info(
                "Registered with the tracker at {tracker} as port {port} "
                "({n} other members offered)",
                tracker=self.address,
                port=self.manager.listen_port,
                n=count,
            )
        tls = self.manager.tls
        if tls is not None:  # the tracker's node_ids close the first-contact gap (section 5.3)
            tls.pins.learn_listed(peers)
        self.manager.add_addresses(peers, "tracker")

    def connected(self, proto: TrackerClientProtocol) -> None:
        self.protocol = proto
        again = " again" if self.down else ""
        self.down = False
        self.log.info(
            "Connected to the tracker at {tracker}{again}", tracker=self.address, again=again
        )

    def disconnected(self, proto: TrackerClientProtocol) -> None:
        if self.protocol is proto:
            self.protocol = None
            self.down = True  # this line says it: the failed retries that follow stay quiet
            self.log.info("Lost the tracker at {tracker}; reconnecting", tracker=self.address)

    def request_peers(self) -> bool:
        """Ask the tracker for members (GET_PEERS); False when not connected."""
        if self.protocol is None or self.protocol.closing:
            return False
        self.protocol.send({"type": "GET_PEERS"})
        return True
