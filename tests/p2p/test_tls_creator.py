"""Real TLS in memory between two ``TlsCreator``s (docs/protocol.md section 5.3),
the identity key file, and the pin map."""

from __future__ import annotations

import os
import stat
from typing import Any, List, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from OpenSSL import SSL
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from cheesecoin.p2p.pins import Pins
from cheesecoin.p2p.tls import TlsCreator, make_certificate, peer_identity
from cheesecoin.storage.identity import (
    IdentityError,
    identity_path,
    load_or_create_identity,
    node_id_of,
)
from tests.cases import temp_path


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """Records the handshake (the peer's key, the TLS version) and the close."""

    def __init__(self) -> None:
        self.key: Optional[str] = None
        self.version: Optional[str] = None
        self.lost: Any = None

    def handshakeCompleted(self) -> None:
        self.key = peer_identity(self.transport)
        self.version = self.transport.getHandle().get_protocol_version_name()

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


def tls_pair(server_creator: Any, client_creator: Any) -> List[Recorder]:
    server, client = Recorder(), Recorder()
    sf = TLSMemoryBIOFactory(server_creator, False, Factory.forProtocol(lambda: server))
    cf = TLSMemoryBIOFactory(client_creator, True, Factory.forProtocol(lambda: client))
    sp, cp = sf.buildProtocol(None), cf.buildProtocol(None)
    pump = iosim.connect(sp, iosim.makeFakeServer(sp), cp, iosim.makeFakeClient(cp), greet=False)
    pump.flush()
    return [server, client]


@implementer(IOpenSSLClientConnectionCreator)
class _Tls12Only:
    """A client that offers TLS 1.2 at most (what a member must refuse)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.use_certificate(make_certificate(key))
        ctx.use_privatekey(key)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self.ctx = ctx

    def clientConnectionForTLS(self, tls: Any) -> SSL.Connection:
        return SSL.Connection(self.ctx, None)


class CreatorTests(SynchronousTestCase):
    """TLS 1.3, each side's certificate holds its identity key, read back after the handshake."""

    def test_both_sides_see_the_others_identity_key(self) -> None:
        a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        server, client = tls_pair(TlsCreator(a), TlsCreator(b))
        self.assertEqual(server.key, node_id_of(b))
        self.assertEqual(client.key, node_id_of(a))
        self.assertEqual((server.version, client.version), ("TLSv1.3", "TLSv1.3"))

    def test_tls_1_2_is_refused(self) -> None:
        server, client = tls_pair(
            TlsCreator(Ed25519PrivateKey.generate()), _Tls12Only(Ed25519PrivateKey.generate())
        )
        self.assertIsNone(server.key)
        self.assertIsNotNone(server.lost)
        self.assertIsNone(client.key)

    def test_the_certificate_is_self_signed_with_the_node_id(self) -> None:
        key = Ed25519PrivateKey.generate()
        cert = make_certificate(key)
        self.assertEqual(cert.subject, cert.issuer)
        self.assertIn(node_id_of(key), cert.subject.rfc4514_string())
        cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes)


class IdentityTests(SynchronousTestCase):
    """identity.key: made once (0600), the same at every start, a damaged one never replaced."""

    def test_created_once_mode_0600_and_loaded_again(self) -> None:
        data = str(temp_path(self) / "data")
        first = load_or_create_identity(data)
        path = identity_path(data)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(node_id_of(load_or_create_identity(data)), node_id_of(first))
        self.assertEqual(len(node_id_of(first)), 64)
        self.assertEqual([n for n in os.listdir(data) if n.endswith(".tmp")], [])

    def test_a_damaged_key_is_an_error_naming_the_file_and_is_kept(self) -> None:
        data = str(temp_path(self) / "data")
        load_or_create_identity(data)
        path = identity_path(data)
        for junk in (
            b"",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            os.urandom(300),
        ):
            with open(path, "wb") as f:
                f.write(junk)
            with self.assertRaises(IdentityError) as e:
                load_or_create_identity(data)
            self.assertIn(path, str(e.exception))
            self.assertNotIn("\n", str(e.exception))
            with open(path, "rb") as f:
                self.assertEqual(f.read(), junk)

    def test_a_key_of_another_kind_is_refused(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        data = temp_path(self) / "data"
        data.mkdir()
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (data / "identity.key").write_bytes(pem)
        with self.assertRaises(IdentityError) as e:
            load_or_create_identity(str(data))
        self.assertIn("not an Ed25519 key", str(e.exception))


class PinsTests(SynchronousTestCase):
    """Fixed pins win; learned ones are bounded; junk is skipped."""

    def test_fixed_is_never_overwritten_by_learning(self) -> None:
        pins = Pins()
        pins.fix(("h", 1), "a" * 64)
        self.assertFalse(pins.learn(("h", 1), "b" * 64))
        self.assertEqual(pins.get(("h", 1)), "a" * 64)

    def test_learned_pins_are_bounded_oldest_first(self) -> None:
        pins = Pins(max_learned=3)
        for i in range(5):
            pins.learn(("h", i + 1), "%064x" % i)
        self.assertEqual(sorted(p for _, p in pins.learned), [3, 4, 5])

    def test_listed_junk_is_skipped(self) -> None:
        pins = Pins()
        entries = [
            1,
            {"host": "h", "port": 1, "node_id": "AB" * 32},
            {"host": "h", "port": 0, "node_id": "a" * 64},
            {"host": "h", "port": 2, "node_id": "c" * 64},
            {"host": ["x"], "port": 3, "node_id": "d" * 64},
            {"host": "h", "port": 4, "node_id": "99"},
        ]
        self.assertEqual(pins.learn_listed(entries), 1)
        self.assertEqual(pins.to_save(), [{"host": "h", "port": 2, "node_id": "c" * 64}])
        again = Pins()
        again.load_saved(pins.to_save())
        self.assertEqual(again.get(("h", 2)), "c" * 64)
