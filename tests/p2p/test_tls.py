"""Section 5.3 with fakes: the STARTTLS exchange, the key check, pins, --require-tls.

The transport is a ``StringTransport`` that records ``startTLS`` and hands
out the certificate a test chooses; the TLS handshake itself is driven by
calling ``handshakeCompleted`` (tests/p2p/test_tls_creator.py runs real TLS
in memory, tests/adversarial/test_hostile_tls.py real members).
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from cheesecoin.p2p.errors import BAN_SCORE
from cheesecoin.p2p.manager import FEATURES
from cheesecoin.p2p.protocol import MemberProtocol
from cheesecoin.p2p.tls import STARTTLS, StartTlsState, TlsPolicy, make_certificate
from cheesecoin.storage.identity import node_id_of
from cheesecoin.testing.fakes import NETWORK, addr, make_member

TLS_FEATURES = tuple(FEATURES) + ("tls",)


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
        self.before_tls = b""  # what was written before startTLS (in plain text)
        self.peer_cert: Any = None

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        self.creator = ctx
        self.before_tls = self.value()

    def getPeerCertificate(self) -> Any:
        return self.peer_cert


def hello(node_id: str, features: Optional[List[str]] = None, port: int = 5000) -> dict:
    msg = {
        "type": "HELLO",
        "version": 1,
        "network": NETWORK.smell,
        "node_id": node_id,
        "port": port,
        "height": 0,
        "tip": NETWORK.smell,
        "work": "2",
    }
    if features is not None:
        msg["features"] = features
    return msg


class Side:
    """One member with tls and one connection to it, driven by hand."""

    def __init__(
        self,
        outbound: bool = False,
        require_tls: bool = False,
        host: str = "10.0.0.9",
        features: tuple = TLS_FEATURES,
        with_policy: bool = True,
    ) -> None:
        self.clock = Clock()
        self.key = Ed25519PrivateKey.generate()
        self.manager = make_member(node_id_of(self.key), self.clock, features=features)
        if with_policy:
            self.manager.tls = TlsPolicy(self.key, require_tls=require_tls)
        self.peer_key = Ed25519PrivateKey.generate()
        self.peer_id = node_id_of(self.peer_key)
        self.address = (host, 24331)
        peer = addr(host, 24331 if outbound else 40000)
        if outbound:
            self.proto = MemberProtocol(self.manager, outbound=True, dial_address=self.address)
        else:
            self.proto = self.manager.factory.buildProtocol(peer)
        self.transport = TlsTransport(peerAddress=peer, hostAddress=addr("10.0.0.1", 24331))
        self.proto.makeConnection(self.transport)

    def send(self, *msgs: Any) -> List[dict]:
        for msg in msgs:
            self.proto.dataReceived(
                msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
            )
        return self.replies()

    def replies(self) -> List[dict]:
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.split(b"\n") if line]

    def handshake(self, key: Optional[Ed25519PrivateKey] = None) -> None:
        self.transport.peer_cert = _Cert(key or self.peer_key)
        self.proto.handshakeCompleted()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.proto.closing


class LoggedCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.lines: List[str] = []

        def observer(event: dict) -> None:
            if event.get("log_level", LogLevel.info) >= LogLevel.info:
                self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)


class StartTlsExchangeTests(LoggedCase):
    """Both HELLOs list tls: STARTTLS, TLS, the key check, and only then a peer."""

    def test_accepting_side_answers_starttls_then_begins_tls_as_server(self) -> None:
        s = Side()
        [ours] = s.send(hello(s.peer_id, ["tls"]))
        self.assertEqual(ours["type"], "HELLO")
        self.assertIn("tls", ours["features"])
        self.assertEqual(ours["node_id"], node_id_of(s.key))
        self.assertIsInstance(s.proto.state, StartTlsState)
        self.assertEqual(s.manager.peers, {})  # not a peer before its key is proved
        self.assertIsNone(s.transport.creator)
        s.send({"type": "STARTTLS"})
        self.assertIs(s.transport.creator, s.manager.tls.creator)
        self.assertEqual(
            s.transport.before_tls, STARTTLS
        )  # the answer went out in plain text, first
        s.replies()
        s.handshake()
        self.assertIs(s.manager.peers[s.peer_id], s.proto)
        self.assertTrue(s.proto.encrypted and s.proto.ready)
        self.assertTrue(any(m["type"] == "STATS" for m in s.replies()))  # now it is synced with
        [info] = s.manager.peers_info()
        self.assertTrue(info["encrypted"])

    def test_connecting_side_sends_starttls_and_waits_for_the_answer(self) -> None:
        s = Side(outbound=True)
        [ours] = s.replies()
        self.assertEqual(ours["type"], "HELLO")
        self.assertEqual(s.send(hello(s.peer_id, ["tls", "headers"])), [{"type": "STARTTLS"}])
        self.assertIsNone(s.transport.creator)  # nothing until the answer
        self.assertEqual(s.send({"type": "STARTTLS"}), [])
        self.assertIs(s.transport.creator, s.manager.tls.creator)
        s.handshake()
        self.assertTrue(s.proto.encrypted)
        self.assertEqual(s.manager.tls.pins.get(s.address), s.peer_id)  # reached over TLS: pinned

    def test_a_certificate_of_another_key_is_refused_as_misbehaviour(self) -> None:
        s = Side()
        s.send(hello(s.peer_id, ["tls"]), {"type": "STARTTLS"})
        s.handshake(Ed25519PrivateKey.generate())
        self.assertTrue(s.closed)
        self.assertEqual(s.manager.peers, {})
        self.assertFalse(s.proto.encrypted)
        self.assertGreaterEqual(s.proto.score, BAN_SCORE)
        self.assertIn("10.0.0.9", s.manager.bans.banned)
        ours = [line for line in self.lines if "not its node id" in line]
        self.assertEqual(len(ours), 1, self.lines)
        s.proto.connectionLost(Failure(ConnectionLost("closed")))
        self.assertEqual(len([line for line in self.lines if "TLS" in line]), 1, self.lines)
        self.assertEqual(s.manager.connections, set())

    def test_no_certificate_at_all_is_refused(self) -> None:
        s = Side()
        s.send(hello(s.peer_id, ["tls"]), {"type": "STARTTLS"})
        s.proto.handshakeCompleted()  # getPeerCertificate() is None
        self.assertTrue(s.closed)
        self.assertEqual(s.manager.peers, {})

    def test_a_failed_handshake_is_one_line_and_misbehaviour(self) -> None:
        s = Side(host="127.0.0.1")
        s.send(hello(s.peer_id, ["tls"]), {"type": "STARTTLS"})
        s.proto.connectionLost(Failure(ConnectionLost("SSL routines: wrong version number")))
        lines = [line for line in self.lines if "TLS handshake failed" in line]
        self.assertEqual(len(lines), 1, self.lines)
        self.assertEqual(s.manager.connections, set())
        self.assertEqual(s.manager.bans.banned, {})  # loopback: never banned, only closed
        self.assertEqual(s.manager.tls.failed, 1)

    def test_bytes_after_starttls_are_refused_without_tls(self) -> None:
        s = Side()
        s.send(hello(s.peer_id, ["tls"]))
        s.send(b'{"type":"STARTTLS"}\n\x16\x03\x01\x00\x05hello')
        self.assertIsNone(s.transport.creator)
        self.assertTrue(s.closed)

    def test_anything_but_starttls_closes(self) -> None:
        for msg in ({"type": "STATS", "id": 1}, {"type": "HELLO"}, {"type": "ERROR", "code": "x"}):
            s = Side()
            s.send(hello(s.peer_id, ["tls"]), msg)
            self.assertTrue(s.closed, msg)
            self.assertIsNone(s.transport.creator)
            self.assertEqual(s.manager.peers, {})

    def test_a_line_that_is_not_a_message_closes_too(self) -> None:
        """Not JSON, bad UTF-8, a type that is not a string: the ERROR, then the close
        (found by the fuzz gate: the connection waited for the handshake timeout)."""
        for line in (b"hello\n", b"\xff\xfe\n", b'{"type": 5}\n'):
            s = Side()
            s.send(hello(s.peer_id, ["tls"]))
            replies = s.send(line)
            self.assertEqual([m["type"] for m in replies], ["ERROR"], line)
            self.assertTrue(s.closed, line)
            self.assertEqual(s.manager.peers, {})

    def test_a_second_starttls_after_tls_began_closes(self) -> None:
        s = Side()
        s.send(hello(s.peer_id, ["tls"]), {"type": "STARTTLS"})
        s.send({"type": "STARTTLS"})
        self.assertTrue(s.closed)

    def test_a_tls_peer_whose_node_id_is_not_a_key_is_refused(self) -> None:
        s = Side()
        s.send(hello("99", ["tls"]))
        self.assertTrue(s.closed)
        self.assertIsNone(s.transport.creator)

    def test_a_transport_without_tls_is_closed_not_crashed(self) -> None:
        clock = Clock()
        key = Ed25519PrivateKey.generate()
        manager = make_member(node_id_of(key), clock, features=TLS_FEATURES)
        manager.tls = TlsPolicy(key)
        proto = manager.factory.buildProtocol(addr("10.0.0.9"))
        transport = StringTransport(peerAddress=addr("10.0.0.9"))
        proto.makeConnection(transport)
        peer = node_id_of(Ed25519PrivateKey.generate())
        proto.dataReceived(json.dumps(hello(peer, ["tls"])).encode() + b"\n" + STARTTLS)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(manager.peers, {})


class PlainAndRefusedTests(LoggedCase):
    """Revision-2 peers, --require-tls, STARTTLS where it has no place, a ClientHello first."""

    def test_a_peer_without_tls_links_in_plain_text(self) -> None:
        s = Side()
        replies = s.send(hello("99", ["headers"]))
        self.assertEqual(replies[0]["type"], "HELLO")
        self.assertTrue(s.proto.ready)
        self.assertFalse(s.proto.encrypted)
        self.assertIsNone(s.transport.creator)
        [info] = s.manager.peers_info()
        self.assertFalse(info["encrypted"])

    def test_require_tls_refuses_a_peer_without_it(self) -> None:
        for features in (None, ["headers", "compact", "mempool"]):
            s = Side(require_tls=True)
            s.send(hello("99", features))
            self.assertTrue(s.closed)
            self.assertEqual(s.manager.peers, {})
        self.assertEqual(
            len([line for line in self.lines if "--require-tls" in line]), 2, self.lines
        )

    def test_starttls_to_a_member_that_did_not_list_tls(self) -> None:
        for with_policy in (False, True):
            s = Side(features=tuple(FEATURES), with_policy=with_policy)
            s.send(hello(s.peer_id, ["tls"]))
            self.assertTrue(s.proto.ready)
            replies = s.send({"type": "STARTTLS"})
            self.assertEqual(
                [m.get("code") for m in replies if m["type"] == "ERROR"], ["bad-message"]
            )
            self.assertTrue(s.closed)
            self.assertIsNone(s.transport.creator)

    def test_starttls_before_hello_is_handshake_required(self) -> None:
        s = Side()
        [reply] = s.send({"type": "STARTTLS"})
        self.assertEqual(reply["code"], "handshake-required")
        self.assertIsNone(s.transport.creator)

    def test_a_tls_client_hello_where_a_line_is_expected_closes_at_once(self) -> None:
        s = Side()
        s.proto.dataReceived(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200))
        [reply] = s.replies()
        self.assertEqual(reply["code"], "bad-json")
        self.assertTrue(s.closed)
        self.assertEqual(s.proto._buffer, bytearray())


class PinTests(LoggedCase):
    """A dialled address with a known node_id: another node_id or no tls there is refused."""

    def pinned(self, **kw: Any) -> Side:
        s = Side(outbound=True, **kw)
        s.replies()
        return s

    def test_a_pin_refuses_another_node_id(self) -> None:
        s = Side(outbound=True)
        s.manager.tls.pins.fix(s.address, node_id_of(Ed25519PrivateKey.generate()))
        s.replies()
        self.assertEqual(s.send(hello(s.peer_id, ["tls"])), [])
        self.assertTrue(s.closed)
        self.assertEqual(len([line for line in self.lines if "pinned" in line]), 1)

    def test_a_pin_refuses_a_hello_without_tls(self) -> None:
        s = Side(outbound=True)
        s.manager.tls.pins.fix(s.address, s.peer_id)
        s.send(hello(s.peer_id, ["headers"]))
        self.assertTrue(s.closed)
        self.assertEqual(s.manager.peers, {})

    def test_a_pin_that_matches_goes_on_to_tls(self) -> None:
        s = Side(outbound=True)
        s.manager.tls.pins.learn(s.address, s.peer_id)
        s.replies()
        self.assertEqual(s.send(hello(s.peer_id, ["tls"])), [{"type": "STARTTLS"}])
        self.assertFalse(s.closed)

    def test_an_unpinned_address_takes_a_plain_peer(self) -> None:
        s = Side(outbound=True)
        s.replies()
        s.send(hello("99", ["headers"]))
        self.assertTrue(s.proto.ready and not s.proto.encrypted)

    def test_get_peers_answers_carry_known_node_ids(self) -> None:
        s = Side()
        s.send(hello("99", ["headers"]))
        s.replies()
        known, unknown = ("10.9.0.1", 24331), ("10.9.0.2", 24331)
        s.manager.addresses.add([{"host": h, "port": p} for h, p in (known, unknown)], "10.7.7.7")
        s.manager.tls.pins.learn(known, s.peer_id)
        [reply] = s.send({"type": "GET_PEERS", "id": 5})
        got = {(e["host"], e["port"]): e.get("node_id") for e in reply["peers"]}
        self.assertEqual(got.get(known), s.peer_id)
        self.assertNotIn(
            "node_id", [e for e in reply["peers"] if (e["host"], e["port"]) == unknown][0]
        )
