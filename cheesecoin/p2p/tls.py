# Encrypted member links: docs/protocol.md section 5.3, feature ``tls``.
#
# Messages it speaks (StartTlsState), right after two HELLOs listing tls:
#   {"type":"STARTTLS"}   the connecting side, then the accepting side's answer; then
#                         TLS 1.3 on the same connection and the check of the peer's key
#   {"type":"ERROR"}      read from the peer instead of STARTTLS: logged (or the reply
#                         to a request of ours), and the connection is closed
"""Encrypted, authenticated member links: the feature ``tls`` (docs/protocol.md section 5.3).

A member that lists ``tls`` has an identity key (``cheesecoin.storage.identity``)
whose public key is its ``node_id``. When both HELLOs list ``tls``, the
connecting side sends ``{"type":"STARTTLS"}`` and then nothing; the other
answers ``{"type":"STARTTLS"}`` and right after writing it starts TLS as the
server; the connecting side starts TLS as the client when it reads that
answer. TLS 1.3 only; each side presents a self-signed X.509 certificate
holding its identity key (``make_certificate``) and, the moment the
handshake completes, checks that the other's certificate holds the key its
HELLO named (``peer_identity``). Only then is the peer accepted (one
connection per node_id), counted and synced with.

``TlsCreator`` is both an ``IOpenSSLServerConnectionCreator`` and an
``IOpenSSLClientConnectionCreator``: it asks the other side for its
certificate and accepts any chain (every certificate is self-signed); the
key is what is checked, against the node_id. ``TlsPolicy`` decides, when a
HELLO has been read, whether the link is refused (a pin, ``--require-tls``),
goes on in plain text (a peer of revision 2), or is encrypted first
(``StartTlsState``). A wrong key or a failed handshake closes the connection
with one log line and counts as misbehaviour (the peer's address is banned,
a loopback one only not redialled for the ban time); a stalled handshake is
dropped by the peer manager's handshake timeout, the same way.
"""

from __future__ import annotations

import datetime
import secrets
from typing import TYPE_CHECKING, Any, Optional, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
    ITLSTransport,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from cheesecoin.core.formats import IDENTITY_RE
from cheesecoin.core.tx import address_of as node_id_of  # a node_id is a public key, as addresses
from cheesecoin.p2p.errors import BAN_SCORE
from cheesecoin.p2p.pins import Pins
from cheesecoin.p2p.states import ConnectionState

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

FEATURE = "tls"
STARTTLS = b'{"type":"STARTTLS"}\n'

log = Logger(namespace="cheesecoin.member")


def make_certificate(key: Ed25519PrivateKey) -> x509.Certificate:
    """A self-signed X.509 certificate holding ``key`` (subject: its node_id)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id_of(key))])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(9999, 12, 31, tzinfo=datetime.timezone.utc))
        .sign(key, None)
    )


def _any_chain(connection: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
    """Every member's certificate is self-signed: no chain to check. The key
    is checked against the peer's node_id once the handshake is done."""
    return True


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLClientConnectionCreator)
class TlsCreator:
    """OpenSSL connections for both ends of a member link: TLS 1.3 only, our
    identity's certificate presented, the other side's certificate required."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.node_id = node_id_of(key)
        self.certificate = make_certificate(key)
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate(self.certificate)
        ctx.use_privatekey(key)
        ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _any_chain)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)  # an idle link holds no read or write buffer
        self.context = ctx

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


def peer_identity(transport: Optional[ISSLTransport]) -> Optional[str]:
    """The Ed25519 public key (hex) of the certificate the peer presented, or None."""
    if transport is None:
        return None
    try:
        cert = cast(Optional[X509], transport.getPeerCertificate())  # OpenSSL's, or None
        key = cert.to_cryptography().public_key() if cert is not None else None
    except Exception:  # no TLS, no certificate, or one cryptography cannot read
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


class TlsPolicy:
    """What a member does with TLS: its creator (from the identity key), its
    pins, and ``--require-tls``. ``intercept`` is asked after each HELLO."""

    def __init__(
        self, key: Ed25519PrivateKey, require_tls: bool = False, pins: Optional[Pins] = None
    ) -> None:
        self.creator = TlsCreator(key)
        self.node_id = self.creator.node_id
        self.require_tls = require_tls
        self.pins = pins if pins is not None else Pins()
        self.refused = 0  # links refused for a pin or --require-tls
        self.failed = 0  # handshakes failed or wrong keys

    def intercept(self, p: MemberProtocol) -> bool:
        """The peer's HELLO is read (and is not our own): True when it does not
        become a peer now, because it is refused (closed) or TLS comes first."""
        assert p.peer_node_id is not None  # its HELLO is read
        ours = FEATURE in p.host.features
        theirs = FEATURE in p.peer_features
        pin = self.pins.get(p.dial_address) if p.outbound else None
        if pin is not None and (p.peer_node_id != pin or not theirs or not ours):
            why = "does not list tls" if not theirs else f"names node id {p.peer_node_id[:16]}"
            return self._refuse(p, f"it is pinned to node id {pin[:16]} and its HELLO {why}")
        if not (ours and theirs):
            if self.require_tls:
                return self._refuse(p, "its HELLO does not list tls (--require-tls)")
            return False
        if not IDENTITY_RE.match(p.peer_node_id):
            return self._refuse(p, "it lists tls but its node id is not an identity key")
        if not p.hello_sent:
            p.send_hello()
        p.state = StartTlsState(p, self)
        if p.outbound:
            p.write_line(STARTTLS)
        return True

    def _refuse(self, p: MemberProtocol, why: str) -> bool:
        self.refused += 1
        log.warn("Refused {peer}: {why}", peer=p.label(), why=why)
        p.close()
        return True

    def reached(self, p: MemberProtocol) -> None:
        """An encrypted link proved the peer's node_id: pin it to the address we dialled."""
        if p.outbound and p.dial_address is not None and p.peer_node_id is not None:
            self.pins.learn(p.dial_address, p.peer_node_id)


class StartTlsState(ConnectionState):
    """Both HELLOs listed tls: the STARTTLS exchange, then the TLS handshake,
    then the check of the peer's key. Nothing else is accepted meanwhile."""

    closes_on_error = True  # any ERROR we must send (a line that is not JSON, ...) ends it

    def __init__(self, protocol: MemberProtocol, policy: TlsPolicy) -> None:
        super().__init__(protocol)
        self.policy = policy
        self.started = False  # TLS begun on the transport

    def msg_STARTTLS(self, msg: dict) -> None:
        p = self.protocol
        if self.started:
            return self._close("a second STARTTLS")
        if not p.outbound:
            p.write_line(STARTTLS)  # the answer, in plain text, then TLS as the server
        if not ITLSTransport.providedBy(p.transport):
            return self._close("this connection cannot carry TLS")
        if not p.start_tls(self.policy.creator):
            return self._close("it sent more after STARTTLS")
        self.started = True

    def msg_ERROR(self, msg: dict) -> None:
        p = self.protocol
        p.remote_error(msg)
        self._close("an ERROR instead of STARTTLS")

    def unknown(self, msg: dict) -> None:
        self._close(f"{str(msg.get('type'))[:40]} instead of STARTTLS")

    def _close(self, why: str) -> None:
        log.info("Closing {peer} before TLS: {why}", peer=self.protocol.label(), why=why)
        self.protocol.close()

    def tls_up(self) -> None:
        """The TLS handshake completed: check the peer's certificate key, then accept it."""
        p = self.protocol
        key = peer_identity(cast(Optional[ISSLTransport], p.transport))  # TLS is up
        assert p.peer_node_id is not None  # its HELLO was read
        if key != p.peer_node_id:
            self.policy.failed += 1
            held = "no Ed25519 key" if key is None else f"key {key[:16]}"
            p.misbehaved(
                BAN_SCORE,
                f"its TLS certificate holds {held}, not its node id {p.peer_node_id[:16]}",
            )
            p.close()
            return
        p.encrypted = True
        self.policy.reached(p)
        if not self.host.accept_peer(p):
            p.close()
            return
        p.become_ready()
        self.host.peer_ready(p)

    def connection_lost(self, reason: Optional[Failure]) -> None:
        """The connection closed before the peer was accepted (called before the
        protocol marks itself closing): a failed handshake once TLS had begun is
        one line and misbehaviour; a close of ours (a wrong key, already said;
        the handshake timeout) or one before TLS, nothing to say."""
        p = self.protocol
        if not self.started or p.encrypted or p.closing:
            return
        self.policy.failed += 1
        why = reason.getErrorMessage() if reason is not None else "closed"
        self.host.ban(p, f"the TLS handshake failed ({why[:120]})")
