"""The seams of the peer layer (issue 27): a penalty travels on its error, the
connection is the one writer of its peer's claim, each state's table of
handlers, and parts built from their collaborators alone."""

from __future__ import annotations

import json
from types import MethodType

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.errors import ProtocolError
from cheesecoin.p2p import fields, states
from cheesecoin.p2p.errors import ERROR_POINTS, PeerError
from cheesecoin.p2p.states import HandshakeState, ReadyState
from cheesecoin.testing.fakes import NETWORK, NOW, Raw, make_member, ready_raw


class PenaltyTests(SynchronousTestCase):
    """What an ERROR we send costs the peer is decided by the error itself."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.manager = make_member("aa", self.clock)
        self.raw = ready_raw(self.manager)

    def test_an_error_with_points_costs_those_and_the_next_error_its_own(self) -> None:
        proto = self.raw.proto
        proto.refuse(PeerError("invalid-tx", "a stale nonce", 1))
        self.assertEqual(proto.score, 1)
        proto.refuse(ProtocolError("invalid-tx", "a bad signature"))
        self.assertEqual(proto.score, 1 + ERROR_POINTS["invalid-tx"])
        proto.refuse(PeerError("invalid-cheese", "may pass", 0))
        self.assertEqual(proto.score, 1 + ERROR_POINTS["invalid-tx"])
        codes = [r["code"] for r in self.raw.replies()]
        self.assertEqual(codes, ["invalid-tx", "invalid-tx", "invalid-cheese"])

    def test_a_handler_raising_a_peer_error_sends_one_error_at_its_cost(self) -> None:
        def stale(msg: dict) -> None:
            raise PeerError("invalid-tx", "tx-nonce: a race", 1)

        self.patch(self.raw.proto.state, "msg_TX", stale)
        [error] = self.raw.send({"type": "TX", "tx": {}, "id": 7})
        self.assertEqual((error["type"], error["code"], error["id"]), ("ERROR", "invalid-tx", 7))
        self.assertEqual(self.raw.proto.score, 1)
        self.raw.send({"type": "NO_SUCH_TYPE"})  # the next ERROR costs its own points
        self.assertEqual(self.raw.proto.score, 1 + ERROR_POINTS["unknown-type"])

    def test_any_protocol_error_raised_by_a_handler_keeps_its_points(self) -> None:
        def costly(msg: dict) -> None:
            raise ProtocolError("bad-message", "a field out of range", 3)

        self.patch(self.raw.proto.state, "msg_TX", costly)
        [error] = self.raw.send({"type": "TX", "tx": {}, "id": 8})
        self.assertEqual((error["code"], error["id"]), ("bad-message", 8))
        self.assertEqual(self.raw.proto.score, 3)


class ClaimTests(SynchronousTestCase):
    """The connection owns what its peer claims of its stack."""

    def test_a_claim_is_what_the_peer_said_and_holds_only_raises_it(self) -> None:
        clock = Clock()
        manager = make_member("aa", clock)
        raw = Raw(manager)
        raw.hello(height=3, tip="ab" * 20, work="40")
        proto = raw.proto
        self.assertEqual((proto.peer_height, proto.peer_tip, proto.peer_work), (3, "ab" * 20, 40))
        proto.holds(2, "cd" * 20, 30)  # less work than it claimed: the claim stays
        self.assertEqual((proto.peer_height, proto.peer_tip, proto.peer_work), (3, "ab" * 20, 40))
        proto.holds(5, "ef" * 20, 50)
        self.assertEqual((proto.peer_height, proto.peer_tip, proto.peer_work), (5, "ef" * 20, 50))
        proto.claim(1, NETWORK.smell, 2)  # a STATS_REPLY: what it says now, lower or not
        self.assertEqual(proto.peer_work, 2)
        with self.assertRaises(AttributeError):
            proto.peer_work = 10**40  # type: ignore[misc]  # one writer: claim()


class TableTests(SynchronousTestCase):
    """Each state's cmd_map: its msg_ handlers and the replies it resolves."""

    def test_the_ready_state_resolves_each_reply_type_and_answers_the_rest(self) -> None:
        manager = make_member("aa", Clock())
        raw = ready_raw(manager)
        table = raw.proto.state.cmd_map
        self.assertIsInstance(raw.proto.state, ReadyState)
        for kind in ReadyState.replies:
            self.assertEqual(table[kind], raw.proto.resolve)
        self.assertEqual(table["PING"], raw.proto.state.msg_PING)
        self.assertNotIn("__init__", table)
        d = raw.proto.request({"type": "STATS"})
        [asked] = raw.replies()
        got = []
        d.addCallback(got.append)
        reply = {"type": "STATS_REPLY", "id": asked["id"], "height": 0, "tip": NETWORK.smell}
        raw.send(dict(reply, work="2", peers=0))
        self.assertEqual([m["type"] for m in got], ["STATS_REPLY"])

    def test_the_handshake_state_takes_hello_and_error_only(self) -> None:
        raw = Raw(make_member("aa", Clock()))
        self.assertIsInstance(raw.proto.state, HandshakeState)
        self.assertEqual(set(raw.proto.state.cmd_map), {"HELLO", "ERROR"})
        [error] = raw.send({"type": "STATS_REPLY", "id": 1})
        self.assertEqual(error["code"], "handshake-required")

    def test_the_names_are_found_once_per_class_and_bound_per_state(self) -> None:
        found = []

        def counting(cls: type) -> dict:
            found.append(cls)
            return states.handler_names(cls)

        self.patch(states, "handler_names", counting)
        one, two = ready_raw(make_member("aa", Clock())), ready_raw(make_member("bb", Clock()))
        self.assertEqual(found, [], "no state built looks its methods up again")
        self.assertEqual(one.proto.state.cmd_map["PING"], one.proto.state.msg_PING)
        self.assertEqual(two.proto.state.cmd_map["PING"], two.proto.state.msg_PING)
        self.assertNotEqual(one.proto.state.handler("PING"), two.proto.state.handler("PING"))
        self.assertEqual(one.proto.state.handler("PONG"), one.proto.resolve)
        self.assertIsNone(one.proto.state.handler("NO_SUCH_TYPE"))
        self.assertEqual(ReadyState._handlers["STATS"], "msg_STATS")

    def test_a_state_holds_no_table_of_bound_handlers(self) -> None:
        """A connection's memory: the table is the class's, bound when a message
        asks (a simulated network holds hundreds of thousands of connections)."""
        raw = ready_raw(make_member("aa", Clock()))
        state = raw.proto.state
        held = [v for v in vars(state).values() if isinstance(v, (dict, MethodType))]
        self.assertEqual(held, [])
        self.assertNotIn("cmd_map", vars(state))
        with self.assertRaises(TypeError):  # the table is read only: handlers live on the state
            state.cmd_map["TX"] = print  # type: ignore[index]


class FeatureSetTests(SynchronousTestCase):
    """Connections with the same features share one set; a peer cannot grow the
    shared sets with names we do not know."""

    def test_the_same_known_features_are_one_set_and_unknown_ones_are_not_kept(self) -> None:
        one = fields.get_features({"features": ["headers", "compact"]})
        two = fields.get_features({"features": ["compact", "headers", "compact"]})
        self.assertEqual(one, frozenset({"headers", "compact"}))
        self.assertIs(one, two)
        kept = len(fields._KNOWN_SETS)
        for n in range(50):
            odd = fields.get_features({"features": ["headers", f"x-{n}"]})
            self.assertEqual(odd, frozenset({"headers", f"x-{n}"}))
        self.assertEqual(len(fields._KNOWN_SETS), kept)
        self.assertLessEqual(kept, 2**5)

    def test_a_hand_built_reply_ends_with_the_id_as_the_encoder_writes_it(self) -> None:
        for msg_id in (0, 7, -5, 10**20, True, "x\u00e9", 'a"b', 1.5):
            self.assertEqual(
                fields.id_suffix(msg_id), ',"id":' + json.dumps(msg_id, ensure_ascii=False)
            )
        self.assertEqual(fields.id_suffix(None), "")

    def test_a_ready_connection_holds_the_shared_set(self) -> None:
        listed = ["headers", "compact", "inv"]
        one, two = Raw(make_member("aa", Clock())), Raw(make_member("bb", Clock()))
        one.hello(features=listed)
        two.hello(features=list(reversed(listed)))
        self.assertTrue(one.proto.ready and two.proto.ready)
        self.assertEqual(one.proto.peer_features, frozenset(listed))
        self.assertIs(one.proto.peer_features, two.proto.peer_features)


class PartsTests(SynchronousTestCase):
    """The parts hold their collaborators, not the manager."""

    def test_no_part_reaches_the_manager(self) -> None:
        manager = make_member("aa", Clock())
        parts = [
            manager.sync,
            manager.relay,
            manager.compact,
            manager.modes,
            manager.inventory,
            manager.mempool_sync,
            manager.admission,
            manager.bans,
            manager.dialler,
            manager.server,
        ]
        for part in parts:
            self.assertFalse(hasattr(part, "manager"), type(part).__name__)
        self.assertIs(manager.relay.downloads, manager.sync)
        self.assertIs(manager.sync.relay, manager.relay)
        self.assertIs(manager.relay.compact, manager.compact)
        self.assertIs(manager.modes.compact, manager.compact)

    def test_a_new_logger_reaches_every_part(self) -> None:
        from twisted.logger import Logger

        manager = make_member("aa", Clock())
        quiet = Logger(namespace="quiet")
        manager.log = quiet
        for part in (manager.sync, manager.relay, manager.compact, manager.inventory):
            self.assertIs(part.log, quiet)
        self.assertIs(manager.bans.log, quiet)
