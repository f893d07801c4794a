"""The member's links (issue 30): --connect HOST:PORT@NODE_ID, --tracker repeatable,
--require-tls, the name tls in --features, the identity key at start, and the
tracker link's node_id and pins (fake transport and clock)."""

from __future__ import annotations

import json
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from procs import run_member
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.member.options import Options
from cheesecoin.member.tap import makeService
from cheesecoin.p2p.manager import PeerManager
from cheesecoin.p2p.tls import TlsPolicy
from cheesecoin.p2p.tracker_link import TrackerLink, _TrackerFactory
from cheesecoin.storage.identity import identity_path, node_id_of
from cheesecoin.storage.pinfile import pins_path
from cheesecoin.testing.chain import make_network
from tests.cases import temp_path

NETWORK = make_network(name="linkstest", bits=1)
ID = "ab" * 32


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionTests(SynchronousTestCase):
    """What the options take and what they refuse, in one line each."""

    def test_connect_with_a_node_id_pins_it(self) -> None:
        options = parse("--connect", f"127.0.0.1:5000@{ID}", "--connect", "[::1]:5001")
        self.assertEqual(options["connect"], [("127.0.0.1", 5000), ("::1", 5001)])
        self.assertEqual(options["pins"], {("127.0.0.1", 5000): ID})

    def test_trackers_are_repeatable(self) -> None:
        options = parse("--tracker", "t1.example:24330", "-t", "t2.example:1")
        self.assertEqual(options["trackers"], [("t1.example", 24330), ("t2.example", 1)])
        self.assertEqual(options["tracker"], ("t1.example", 24330))
        self.assertEqual(parse()["trackers"], [])

    def test_tls_in_features(self) -> None:
        self.assertIn("tls", parse()["feature-names"])
        self.assertNotIn("tls", parse("--features", "rev2")["feature-names"])
        self.assertNotIn("tls", parse("--features", "none")["feature-names"])
        self.assertEqual(parse("--features", "headers,tls")["feature-names"], ("headers", "tls"))
        self.assertEqual(parse("--features", "tls")["feature-names"], ("tls",))

    def test_refused_in_one_line(self) -> None:
        for args, words in [
            (["--connect", "127.0.0.1:5000@AB"], "64 lowercase hex"),
            (["--connect", f"127.0.0.1:5000@{ID.upper()}"], "64 lowercase hex"),
            (["--connect", f"127.0.0.1@{ID}"], "--connect"),
            (["--require-tls", "--features", "rev2"], "--require-tls needs tls"),
            (["--connect", f"h:1@{ID}", "--features", "none"], "needs tls"),
            (["--tracker", "nohost"], "--tracker"),
        ]:
            with self.assertRaises(usage.UsageError, msg=args) as e:
                parse(*args)
            self.assertIn(words, str(e.exception), args)
            self.assertNotIn("\n", str(e.exception))


class StartTests(SynchronousTestCase):
    """The identity key at start: made once, the node_id; no key without tls."""

    def start(self, data: str, *extra: str) -> object:
        top = makeService(
            parse(
                "--data-dir", data, "--port", "0", "--api-port", "0", "--miner-port", "0", *extra
            ),
            reactor=MemoryReactorClock(),
        )
        top.startService()
        self.addCleanup(top.stopService)
        return top

    def test_the_node_id_is_the_identity_key_at_every_start(self) -> None:
        data = str(temp_path(self) / "data")
        top = self.start(data, "--connect", f"127.0.0.1:5000@{ID}", "--require-tls")
        node_id = top.node.node_id
        self.assertEqual(len(node_id), 64)
        self.assertTrue(os.path.exists(identity_path(data)))
        self.assertEqual(top.manager.tls.node_id, node_id)
        self.assertTrue(top.manager.tls.require_tls)
        self.assertEqual(top.manager.tls.pins.get(("127.0.0.1", 5000)), ID)
        top.stopService()
        again = self.start(data)
        self.assertEqual(again.node.node_id, node_id)

    def test_learned_pins_are_saved_and_loaded_at_the_next_start(self) -> None:
        data = str(temp_path(self) / "data")
        top = self.start(data)
        top.manager.tls.pins.learn(("10.0.0.5", 24331), ID)
        top.stopService()  # the state is saved when the member stops
        with open(pins_path(data), encoding="utf-8") as f:
            saved = json.load(f)["pins"]
        self.assertEqual(saved, [{"host": "10.0.0.5", "port": 24331, "node_id": ID}])
        again = self.start(data)
        self.assertEqual(again.manager.tls.pins.get(("10.0.0.5", 24331)), ID)

    def test_a_damaged_pin_file_is_ignored(self) -> None:
        data = temp_path(self) / "data"
        data.mkdir()
        (data / "pins.json").write_text("{not json")
        top = self.start(str(data))
        self.assertEqual(len(top.manager.tls.pins), 0)

    def test_without_tls_no_identity_key(self) -> None:
        data = str(temp_path(self) / "data")
        top = self.start(data, "--features", "rev2")
        self.assertIsNone(top.manager.tls)
        self.assertFalse(os.path.exists(identity_path(data)))
        self.assertEqual(len(top.node.node_id), 32)

    def test_a_damaged_identity_key_stops_the_member_with_one_line(self) -> None:
        root = temp_path(self)
        data = root / "data"
        data.mkdir()
        (data / "identity.key").write_text("not a key\n")
        result = run_member(root, data)
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        [line] = [x for x in result.stderr.splitlines() if "identity" in x]
        self.assertIn(str(data / "identity.key"), line)
        self.assertEqual((data / "identity.key").read_text(), "not a key\n")


class TrackerLinkTests(SynchronousTestCase):
    """REGISTER carries the identity's node_id; the tracker's node_ids become pins."""

    def link(self, tls: bool) -> tuple:
        clock = Clock()
        key = Ed25519PrivateKey.generate()
        features = ("headers", "tls") if tls else ("headers",)
        node = MemberNode(CheeseStack(NETWORK), node_id=node_id_of(key) if tls else None)
        manager = PeerManager(
            node,
            reactor=clock,
            target_peers=2,
            features=features,
            dialer=lambda host, port, factory: Deferred(),
        )
        if tls:
            manager.tls = TlsPolicy(key)
        manager.listen_port = 7000
        link = TrackerLink(manager, "127.0.0.1", 24330, reactor=clock, endpoint=object())
        proto = _TrackerFactory(link).buildProtocol(IPv4Address("TCP", "127.0.0.1", 24330))
        transport = StringTransport()
        proto.makeConnection(transport)
        return manager, proto, transport

    def test_register_carries_the_node_id_with_tls_only(self) -> None:
        manager, _, transport = self.link(tls=True)
        self.assertEqual(
            json.loads(transport.value()),
            {"type": "REGISTER", "port": 7000, "node_id": manager.node.node_id},
        )
        _, _, transport = self.link(tls=False)
        self.assertEqual(json.loads(transport.value()), {"type": "REGISTER", "port": 7000})

    def test_the_trackers_node_ids_are_pinned(self) -> None:
        manager, proto, _ = self.link(tls=True)
        peers = [
            {"host": "10.0.0.1", "port": 1, "node_id": ID},
            {"host": "10.0.0.2", "port": 2},
            {"host": "10.0.0.3", "port": 3, "node_id": "zz"},
        ]
        proto.dataReceived(json.dumps({"type": "PEERS", "peers": peers}).encode() + b"\n")
        self.assertEqual(manager.tls.pins.get(("10.0.0.1", 1)), ID)
        self.assertIsNone(manager.tls.pins.get(("10.0.0.2", 2)))
        self.assertIsNone(manager.tls.pins.get(("10.0.0.3", 3)))
