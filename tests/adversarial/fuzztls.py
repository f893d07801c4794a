"""The fuzz gate's TLS runs (section 5.3 of docs/protocol.md): for some seeds the
member lists ``tls`` with a ``TlsPolicy`` (as ``cheesecoin.member.links`` sets
it up), and some of the storm's peers list ``tls`` too. Those are
``TlsAdversary``: on a ``TlsTransport`` (a ``StringTransport`` that records
``startTLS`` and presents a chosen certificate; the handshake itself is
``handshakeCompleted``, as in tests/p2p/test_tls.py), each with one way
through the STARTTLS exchange: the honest one (the right certificate, then it
storms like any peer), or anything but STARTTLS, bytes after STARTTLS,
STARTTLS twice, a TLS record before HELLO, a wrong certificate or none, the
connection lost mid-handshake.

``broken`` is checked after every step: no connection is a peer (nor synced
with, nor in the mempool exchange) before its key check passed, every closed
connection is gone from ``manager.connections``, the pin map within
``MAX_PINS``; each dishonest way must end in a close.
"""

from __future__ import annotations

import json
import random
from typing import Any, Dict, List, Optional, Tuple

import fuzzshapes as shapes
import fuzzworld
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fuzzpeers import Adversary
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from cheesecoin.p2p.manager import FEATURES, HANDSHAKE_TIMEOUT, REFILL_INTERVAL
from cheesecoin.p2p.pins import MAX_PINS
from cheesecoin.p2p.tls import FEATURE, STARTTLS, StartTlsState, TlsPolicy, make_certificate
from cheesecoin.storage.identity import node_id_of
from cheesecoin.wire.codec import message_id, parse_message

# One seed in TLS_EVERY runs a member that lists tls (decided by the seed, so it replays).
TLS_EVERY = 3
TLS_FEATURES = tuple(FEATURES) + (FEATURE,)  # what a tls run's member lists
TLS_PEERS = 0.4  # of the storm's new peers in a tls run, those that list tls
# The ways through the exchange (the honest one weighted: it then storms as a peer).
MODES = ("honest", "honest", "honest", "other", "bytes", "twice", "record", "wrong", "none", "lost")
TLS_RECORD = b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03" + bytes(32)  # a ClientHello's start
# What a member may write to a tls peer before its key check passed.
BEFORE_PROOF = ("HELLO", "STARTTLS", "ERROR")


def tls_run(seed: int) -> bool:
    return seed % TLS_EVERY == 0


def member_key(seed: int) -> Optional[Ed25519PrivateKey]:
    """The identity key of a tls run's member, from the seed (so a run replays); None
    when the seed's run is not a tls run."""
    if not tls_run(seed):
        return None
    return Ed25519PrivateKey.from_private_bytes(random.Random(seed ^ 0x715).randbytes(32))


def node_id(key: Optional[Ed25519PrivateKey]) -> str:
    """The member's node_id: its identity key's in a tls run."""
    return node_id_of(key) if key is not None else "aa"


def install(manager: Any, key: Optional[Ed25519PrivateKey]) -> None:
    """``manager.tls`` as ``cheesecoin.member.links.install_tls`` sets it (no pins file)."""
    if key is not None:
        manager.tls = TlsPolicy(key)


class _Cert:
    """What getPeerCertificate returns: something with to_cryptography()."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.cert = make_certificate(key)

    def to_cryptography(self) -> Any:
        return self.cert


@implementer(ITLSTransport)
class TlsTransport(StringTransport):
    """A StringTransport that records startTLS and presents a chosen certificate."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.creator: Any = None
        self.peer_cert: Any = None

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        self.creator = ctx

    def getPeerCertificate(self) -> Any:
        return self.peer_cert


def choose(run: Any, features: List[str]) -> Tuple[type, List[str]]:
    """The class and features of a new storm peer: in a tls run some list tls."""
    if run.member.tls is None or run.rng.random() >= TLS_PEERS:
        return Adversary, features
    return TlsAdversary, features + [FEATURE]


class TlsAdversary(Adversary):
    """A storm peer that lists tls and goes one way (``mode``) through the exchange."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        rng = self.run.rng
        self.key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        self.node_id = node_id_of(self.key)
        self.mode = rng.choice(MODES)
        self.proved = False  # our certificate, with the key our HELLO named, was handed over

    @property
    def unproved(self) -> bool:
        """Both HELLOs listed tls (ours may be a generator's that did not) and our key
        check has not passed: the member must not treat us as a peer yet."""
        return not self.proved and both_tls(self.run.member, self.proto)

    def make_transport(self, peer: Any, local: Any) -> StringTransport:
        return TlsTransport(peerAddress=peer, hostAddress=local)

    def connect(self, before: Any = (), hello: Optional[bytes] = None) -> bool:
        if self.mode == "record":  # a ClientHello where the HELLO line belongs
            before = [(TLS_RECORD, "STARTTLS")] + list(before)
        if not super().connect(before, hello):
            return False
        self.exchange()
        return True

    def feed(self, data: bytes, kind: str) -> None:
        """``data`` in one write (not cut: what comes after STARTTLS must be there with it)."""
        if not self.lost:
            self.run.timed(kind, self, lambda: self.proto.dataReceived(data), len(data), data, 1)

    def exchange(self) -> None:
        """Both HELLOs listed tls: our way through the STARTTLS exchange and handshake."""
        p, mode = self.proto, self.mode
        if self.lost or p.closing or not isinstance(p.state, StartTlsState):
            self.expect_closed("a TLS record before HELLO", mode == "record")
            return  # refused, closed, or a HELLO of the generator that does not list tls
        if mode == "other":
            kind = self.run.rng.choice([t for t in self.run.types if t != "STARTTLS"])
            ctx = fuzzworld.Ctx(self.run.world, self.run.rng, self.run.member)
            line = shapes.make(kind, ctx)
            self.send(line, kind)
            # The finding (/tmp/fuzz-findings.md 7): a line that does not parse is answered
            # with an ERROR and left to the handshake timeout (``broken``), not closed at once.
            self.expect_closed(f"{kind} instead of STARTTLS", parses(line))
            return
        if mode == "bytes":
            self.feed(STARTTLS + TLS_RECORD, "STARTTLS")
            self.expect_closed("bytes after STARTTLS", started=False)
            return
        self.feed(STARTTLS, "STARTTLS")
        if self.transport.creator is not self.run.member.tls.creator:
            self.fail("STARTTLS right after the HELLOs did not begin TLS with our creator")
            return
        if mode == "twice":
            self.feed(STARTTLS, "STARTTLS")
            self.expect_closed("a second STARTTLS")
        elif mode == "lost":
            self.lost = True
            reason = Failure(ConnectionLost("SSL routines: unexpected eof while reading"))
            self.run.guard("connectionLost", lambda: p.connectionLost(reason))
        elif mode in ("wrong", "none"):
            if mode == "wrong":
                self.transport.peer_cert = _Cert(Ed25519PrivateKey.generate())
            self.handshake()
            self.expect_closed(f"a certificate with {mode} key")
        else:
            self.transport.peer_cert = _Cert(self.key)
            self.proved = True
            self.handshake()
            if not (p.encrypted or p.closing):
                self.fail("the right certificate neither made an encrypted peer nor a close")

    def handshake(self) -> None:
        self.run.timed("STARTTLS", self, self.proto.handshakeCompleted, 0, b"", 0)

    def expect_closed(self, what: str, applies: bool = True, started: Any = None) -> None:
        if not applies:
            return
        if not (self.lost or self.proto.closing or self.transport.disconnecting):
            self.fail(f"a tls peer that sent {what} was not closed")
        if started is False and self.transport.creator is not None:
            self.fail(f"TLS begun for a tls peer that sent {what}")

    def fail(self, what: str) -> None:
        self.run.bounds.setdefault(f"tls: {what}", f"peer {self.n}, mode {self.mode}")

    def read(self) -> None:
        """Before our key check passed the member writes only HELLO, STARTTLS, ERROR."""
        if self.transport is not None and not self.lost and self.unproved:
            for raw in self.transport.value().split(b"\n"):
                try:
                    kind = json.loads(raw).get("type") if raw else None
                except (ValueError, AttributeError):
                    kind = None
                if kind is not None and kind not in BEFORE_PROOF:
                    self.fail(f"the member wrote {str(kind)[:40]} before the key check passed")
        super().read()


def parses(line: bytes) -> bool:
    """``line`` is a message the connection's state is handed (not refused while parsing)."""
    try:
        msg = parse_message(line)
    except Exception:
        return False
    return message_id(msg) is not None or "id" not in msg


def both_tls(member: Any, proto: Any) -> bool:
    """The member has a TlsPolicy, and it and the peer's HELLO list tls."""
    return (
        member.tls is not None
        and FEATURE in member.features
        and proto is not None
        and FEATURE in proto.peer_features
    )


def broken(run: Any) -> Dict[str, str]:
    """What the tls checks find wrong now: {what: detail}."""
    out: Dict[str, str] = {}
    member = run.member
    for peer in run.adversaries:
        proto = peer.proto
        if proto is None:
            continue
        if peer.lost and proto in member.connections:
            out["a closed connection still in manager.connections"] = f"peer {peer.n}"
        if isinstance(peer, TlsAdversary) and peer.unproved:
            if proto in member.peers.values():
                out["tls: a peer before its key check passed"] = f"peer {peer.n} ({peer.mode})"
            if proto.mempool_done:
                out["tls: the mempool exchange before the key check"] = f"peer {peer.n}"
            held = member.clock.seconds() - proto.connected_at
            if not peer.lost and held > HANDSHAKE_TIMEOUT + REFILL_INTERVAL:
                out["tls: a link held past the handshake timeout unproved"] = f"peer {peer.n}"
    if member.tls is not None:
        for proto in member.peers.values():
            if both_tls(member, proto) and not proto.encrypted:
                out["tls: a peer listing tls accepted unencrypted"] = proto.label()
        if len(member.tls.pins.learned) > MAX_PINS:
            out["the pin map over MAX_PINS"] = str(len(member.tls.pins.learned))
    return out
