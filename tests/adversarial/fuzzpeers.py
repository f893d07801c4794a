"""The fuzz gate's peers (issue 26): the message types the member handles,
read from the code (every ``msg_`` handler of the connection states in
``cheesecoin.p2p.states``; a handler that only hands its message to
``protocol.resolve`` or ``remote_error`` is a reply type), a log observer
that catches failures, and ``Adversary``: a hand-driven peer on a
``StringTransport`` (inbound or outbound, features on or off, claiming more
work than it has, perhaps one that never answers)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from typing import Any, Dict, List, Optional, Set, Tuple

from fuzzworld import HUGE_WORK, _hex
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from cheesecoin.p2p import states
from cheesecoin.p2p.protocol import MemberProtocol
from cheesecoin.testing.fakes import NETWORK, addr, refused

# -- the message types, from the code ------------------------------------------


def state_classes() -> List[type]:
    """The member connection's states: every class of a ``cheesecoin.p2p`` module
    with ``msg_`` handlers that is not itself a protocol (``HandshakeState`` and
    ``ReadyState`` of ``states``, the TLS exchange's state, any added later,
    wherever it lives; not the tracker link's protocol)."""
    import cheesecoin.p2p

    found = []
    for info in pkgutil.iter_modules(cheesecoin.p2p.__path__):
        module = importlib.import_module("cheesecoin.p2p." + info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and not issubclass(cls, Protocol)  # the tracker link: not a member connection
                and any(n.startswith("msg_") for n in dir(cls))
            ):
                found.append(cls)
    return found


def handled_types() -> Set[str]:
    """Every type in a member connection state's table (its ``cmd_map``): each
    ``msg_`` handler, and each reply type the state resolves (``replies``)."""
    classes = state_classes()
    assert states.HandshakeState in classes and states.ReadyState in classes  # the scan works
    handlers = {name[4:] for cls in classes for name in dir(cls) if name.startswith("msg_")}
    return handlers.union(*(getattr(cls, "replies", ()) for cls in classes))


def reply_types() -> Set[str]:
    """The handled types that are replies: the ready state resolves a request with
    them (its ``replies``, or a handler that calls resolve or remote_error)."""
    out = set(states.ReadyState.replies)
    for kind in handled_types():
        handler = getattr(states.ReadyState, "msg_" + kind, None)
        if handler is not None and (
            "resolve(" in inspect.getsource(handler)
            or "remote_error(" in inspect.getsource(handler)
        ):
            out.add(kind)
    return out


# -- what the member logs ------------------------------------------------------


class LogCatcher:
    """Collects every logged failure, critical event and unhandled Deferred error."""

    def __init__(self) -> None:
        self.events: List[str] = []

        @provider(ILogObserver)
        def observe(event: dict) -> None:
            text = formatEvent(event) or ""
            failure = event.get("log_failure")
            if (
                failure is not None
                or event.get("log_level") in (LogLevel.critical,)
                or "Unhandled error" in text
                or "Traceback" in text
            ):
                if failure is not None:
                    text += "\n" + failure.getTraceback()
                self.events.append(text)

        self.observer = observe

    def __enter__(self) -> "LogCatcher":
        globalLogPublisher.addObserver(self.observer)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self.observer)


# -- the peers -----------------------------------------------------------------


class Adversary:
    """A hand-driven peer on a StringTransport: it sends what the storm gives it
    and answers (or ignores) the member's requests."""

    def __init__(
        self, run: Any, n: int, inbound: bool, features: List[str], claim: str, liar: bool
    ) -> None:
        self.run, self.n, self.inbound = run, n, inbound
        self.features, self.claim, self.liar = features, claim, liar
        self.host = run.rng.choice(["203.0.113.%d", "198.51.100.%d", "192.0.2.%d"]) % (n % 250 + 1)
        self.port = 24331 + n
        self.node_id = "%x" % (0xF00 + n)
        self.requests: Dict[int, dict] = {}  # the member's requests to us, unanswered
        self.tx_lines = 0  # TX lines the member wrote to us
        self.lost = False
        self.proto: Any = None
        self.transport: Optional[StringTransport] = None

    def connect(self, before: List[Tuple[bytes, str]] = (), hello: Optional[bytes] = None) -> bool:
        """Connect (inbound: the member accepts; outbound: as if it dialled us), send
        the lines ``before`` (in the handshake state), then our HELLO (or ``hello``)."""
        manager = self.run.member
        peer, local = addr(self.host, 40000 + self.n), addr("10.0.0.1", 24331)
        if self.inbound:
            self.proto = manager.factory.buildProtocol(peer)
            if refused(self.proto):
                self.lost = True
                return False
        else:
            self.proto = MemberProtocol(manager, outbound=True, dial_address=(self.host, self.port))
        self.transport = self.make_transport(peer, local)
        self.run.timed("HELLO", self, lambda: self.proto.makeConnection(self.transport), 0, b"", 0)
        for line, kind in before:
            self.send(line, kind)
        if hello is not None:
            self.claim = "its own"  # whatever that HELLO says
        self.send(hello if hello is not None else json.dumps(self.hello()).encode(), "HELLO")
        if self.inbound and not self.lost:  # what it claims to listen on
            self.run.inbound_claims[(self.host, self.port)] = self.n
        if self.tx_lines and self.claim in ("huge", "more"):  # its tip is made up: nothing proven
            self.run.bounds.setdefault(
                "our mempool pushed as TX at the handshake to a peer that only claimed more work "
                "(finding 8)",
                f"{self.tx_lines} TX lines to peer {self.n} (features {self.features})",
            )
        return True

    def make_transport(self, peer: Any, local: Any) -> StringTransport:
        return StringTransport(peerAddress=peer, hostAddress=local)

    def hello(self) -> dict:
        honest = self.run.honest.node.stack
        work = {"huge": HUGE_WORK, "more": str(honest.work + 2), "less": "2"}[self.claim]
        msg = {
            "type": "HELLO",
            "version": 1,
            "network": NETWORK.smell,
            "node_id": self.node_id,
            "port": self.port,
            "height": honest.height + 1,
            "tip": _hex(self.run.rng),
            "work": work,
        }
        if self.features:
            msg["features"] = self.features
        return msg

    def send(self, data: bytes, kind: str, lines: int = 1) -> None:
        """Lines (``data``, without its last newline), whole or in pieces; the member's
        CPU for them is measured, and its output read."""
        if self.lost:
            return
        line = data + b"\n"
        rng = self.run.rng
        self.run.sample(kind, data)
        if rng.random() < 0.1 and 1 < len(line) < 4096:
            cut = sorted(rng.sample(range(1, len(line)), min(3, len(line) - 1)))
            pieces = [line[a:b] for a, b in zip([0] + cut, cut + [len(line)])]
        else:
            pieces = [line]

        def feed() -> None:
            for piece in pieces:
                if not self.proto.transport.disconnecting:
                    self.proto.dataReceived(piece)

        self.run.timed(kind, self, feed, len(line), data, lines)

    def read(self) -> None:
        """The member's output to us: note its requests; close if it closed."""
        if self.transport is None or self.lost:
            return
        data = self.transport.value()
        self.transport.clear()
        for raw in data.split(b"\n"):
            if not raw:
                continue
            self.run.sample(self.run.last_kind, raw)
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = None
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                self.run.bounds.setdefault(
                    "the member wrote a line that is not one JSON message", repr(raw[:200])
                )
                continue
            self.tx_lines += msg.get("type") == "TX"
            if isinstance(msg.get("id"), int) and msg.get("type") not in self.run.replies:
                self.requests[msg["id"]] = msg
        if self.transport.disconnecting:
            self.leave()

    def leave(self) -> None:
        if self.lost or self.proto is None:
            return
        self.lost = True
        self.run.guard(
            "connectionLost", lambda: self.proto.connectionLost(Failure(ConnectionDone()))
        )
