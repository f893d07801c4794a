"""The tracker keeps a REGISTER's node_id and lists it in PEERS (docs/protocol.md section 2)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.tracker.test_tracker import Net

KEY_A = "a1" * 32
KEY_B = "b2" * 32


class TrackerNodeIdTests(SynchronousTestCase):
    """node_id in REGISTER: kept, listed, checked; a registration without one lists none."""

    def test_node_id_is_listed_with_the_member(self) -> None:
        net = Net()
        a, b, c = net.connect(), net.connect(), net.connect()
        a.register(5001, node_id=KEY_A)
        b.register(5002, node_id=KEY_B)
        c.register(5003)
        listed = {p["port"]: p for p in c.ask(type="GET_PEERS")["peers"]}
        self.assertEqual(listed[5001], {"host": "127.0.0.1", "port": 5001, "node_id": KEY_A})
        self.assertEqual(listed[5002], {"host": "127.0.0.1", "port": 5002, "node_id": KEY_B})
        listed = {p["port"]: p for p in a.ask(type="GET_PEERS")["peers"]}
        self.assertEqual(listed[5003], {"host": "127.0.0.1", "port": 5003})

    def test_a_new_registration_replaces_the_node_id(self) -> None:
        net = Net()
        a, b = net.connect(), net.connect()
        a.register(5001, node_id=KEY_A)
        a.register(5001, node_id=KEY_B)
        b.register(5002)
        [entry] = b.ask(type="GET_PEERS")["peers"]
        self.assertEqual(entry["node_id"], KEY_B)

    def test_a_malformed_node_id_is_bad_message_and_not_registered(self) -> None:
        for bad in ("A1" * 32, "xyz", "", "a" * 65, 12, ["a"]):
            net = Net()
            a = net.connect()
            reply = a.ask(type="REGISTER", port=5001, node_id=bad)
            self.assertEqual((reply["type"], reply["code"]), ("ERROR", "bad-message"), bad)
            self.assertEqual(len(net.factory.registry), 0, bad)

    def test_null_node_id_is_none(self) -> None:
        net = Net()
        a, b = net.connect(), net.connect()
        a.register(5001, node_id=None)
        b.register(5002)
        [entry] = b.ask(type="GET_PEERS")["peers"]
        self.assertEqual(entry, {"host": "127.0.0.1", "port": 5001})
