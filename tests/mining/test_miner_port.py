"""The member's miner port (docs/protocol.md section 6) with fake transports and a fake clock."""

from __future__ import annotations

import json
from typing import Any, List, Tuple

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import meets_pow
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.node import MemberNode
from cheesecoin.core.pow import NONCE_LIMIT, search_nonce
from cheesecoin.core.tx import sign_tx
from cheesecoin.mining.port import MinerPortFactory, MinerPortProtocol
from cheesecoin.storage.sqlite import StorageError
from tests.cases import case
from tests.mining.test_mining import MINER, extend, funded_keys, make_node


class Client:
    """One connection to the miner port over a StringTransport."""

    def __init__(self, factory: MinerPortFactory) -> None:
        self.proto: MinerPortProtocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, msg: Any) -> None:
        line = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.proto.dataReceived(line + b"\n")

    def received(self) -> List[dict]:
        out = [json.loads(line) for line in self.transport.value().splitlines()]
        self.transport.clear()
        return out

    def ask(self, msg: Any) -> dict:
        self.send(msg)
        got = self.received()
        assert len(got) == 1, got
        return got[0]


def setup(bits: int = 8, **kw: Any) -> Tuple[MemberNode, MinerPortFactory, task.Clock]:
    node = make_node(bits=bits, **kw)
    clock = task.Clock()
    factory = MinerPortFactory(node, MINER, clock=clock)
    factory.doStart()
    return node, factory, clock


def good_nonce(work: dict) -> int:
    nonce, _ = search_nonce(work["prefix"], work["bits"], 0, NONCE_LIMIT)
    assert nonce is not None
    return nonce


def bad_nonce(work: dict) -> int:
    import hashlib

    for n in range(10**6):
        if not meets_pow(
            hashlib.sha1((work["prefix"] + str(n)).encode()).hexdigest(), work["bits"]
        ):
            return n
    raise AssertionError("no bad nonce")  # pragma: no cover


class WorkTests(SynchronousTestCase):
    """WORK on connect, on a new tip and on new transactions; jobs kept; miners that go."""

    def test_work_on_connect(self) -> None:
        node, factory, _ = setup()
        extend(node, 2)
        client = Client(factory)
        (work,) = client.received()
        assert set(work) == {"type", "job", "prefix", "bits", "cheese"} and work["type"] == "WORK"
        assert isinstance(work["job"], int)
        cheese = work["cheese"]
        assert set(cheese) == {
            "parent_smell",
            "sequence_number",
            "timestamp",
            "bits",
            "unit_of_information",
        }
        assert cheese["parent_smell"] == node.stack.tip.smell and cheese["sequence_number"] == 3
        assert work["bits"] == cheese["bits"] == node.stack.next_bits(node.stack.tip)
        assert work["prefix"].startswith(
            f"{cheese['parent_smell']}:3:{cheese['timestamp']}:{cheese['bits']}:"
        )
        assert work["prefix"].endswith(":") and work["prefix"].count(":") == 5
        assert cheese["unit_of_information"]["miner"] == MINER
        # a second miner gets the same job without a new template
        assert Client(factory).received() == [work]

    def test_work_again_on_a_new_tip_and_on_new_transactions(self) -> None:
        node, factory, clock = setup(bits=4)
        keys = funded_keys(node, 1)
        clients = [Client(factory), Client(factory)]
        first = clients[0].received()[0]
        clients[1].received()
        extend(node, 2)
        clock.advance(0)
        for client in clients:
            (work,) = client.received()  # two new tips, one WORK
            assert (
                work["job"] != first["job"]
                and work["cheese"]["parent_smell"] == node.stack.tip.smell
            )
        for i in range(3):
            node.submit_tx(sign_tx(keys[0], MINER, 1, 1, i))
        clock.advance(0.1)
        assert clients[0].received() == []
        clock.advance(0.5)
        (work,) = clients[0].received()  # a burst of transactions, one WORK
        assert len(work["cheese"]["unit_of_information"]["transactions"]) == 3
        assert clients[1].received() == [work]

    def test_only_recent_jobs_are_kept(self) -> None:
        node, factory, clock = setup(bits=4)
        client = Client(factory)
        first = client.received()[0]
        node_first_parent = first["cheese"]["parent_smell"]
        for _ in range(factory.max_jobs + 2):
            extend(node)
            clock.advance(0)
        client.received()
        assert len(factory.jobs) == factory.max_jobs and first["job"] not in factory.jobs
        assert node_first_parent != node.stack.tip.smell

    def test_a_closed_connection_gets_no_more_work(self) -> None:
        node, factory, clock = setup()
        client = Client(factory)
        client.received()
        client.proto.connectionLost(None)
        assert factory.clients == set()
        extend(node)
        clock.advance(0)
        assert client.received() == [] and factory.current is None  # no template built for nobody

    def test_stopped_factory_stops_listening_to_the_node_and_lets_miners_go(self) -> None:
        node, factory, _ = setup()
        client = Client(factory)
        (work,) = client.received()
        assert node.tip_listeners and node.tx_listeners
        factory.doStop()
        assert not node.tip_listeners and not node.tx_listeners
        assert client.transport.disconnecting
        # a SUBMIT already on its way when the port closed is not stored (the store may be closed)
        client.proto.closing = False
        reply = client.ask({"type": "SUBMIT", "job": work["job"], "nonce": good_nonce(work)})
        assert (reply["type"], reply["code"]) == ("ERROR", "busy") and node.stack.height == 0


class SubmitTests(SynchronousTestCase):
    """SUBMIT: accepted, stale, invalid, busy."""

    def test_submit_accepted_stores_and_announces_the_cheese(self) -> None:
        node, factory, clock = setup()
        announced: List[Any] = []
        node.tip_listeners.append(
            lambda result, source: announced.append((result.connected, source))
        )
        client = Client(factory)
        (work,) = client.received()
        nonce = good_nonce(work)
        reply = client.ask({"type": "SUBMIT", "job": work["job"], "nonce": nonce, "id": "s1"})
        smell = node.stack.tip.smell
        assert reply == {
            "type": "SUBMIT_REPLY",
            "job": work["job"],
            "accepted": True,
            "smell": smell,
            "id": "s1",
        }
        cheese = node.stack.get_cheese(smell)
        assert cheese == dict(work["cheese"], nonce=nonce, smell=smell)
        assert announced == [([cheese], "miner")]
        clock.advance(0)
        (work2,) = client.received()  # the next job, on the new tip
        assert work2["cheese"]["parent_smell"] == smell
        # submitting the same nonce again: the job's parent is no longer the tip
        again = client.ask({"type": "SUBMIT", "job": work["job"], "nonce": nonce, "id": 7})
        assert again["type"] == "ERROR" and again["code"] == "stale" and again["id"] == 7

    def test_submit_on_an_old_parent_is_stale(self) -> None:
        node, factory, clock = setup()
        client = Client(factory)
        (work,) = client.received()
        nonce = good_nonce(work)
        extend(node)  # someone else's cheese wins
        reply = client.ask({"type": "SUBMIT", "job": work["job"], "nonce": nonce})
        assert reply["type"] == "ERROR" and reply["code"] == "stale" and "id" not in reply
        assert node.stack.height == 1

    def test_unknown_job_is_stale(self) -> None:
        for job in [123, "abc", "1", 2**63 - 1]:
            with case(job=job):
                _, factory, _ = setup()
                client = Client(factory)
                client.received()
                reply = client.ask({"type": "SUBMIT", "job": job, "nonce": 1, "id": "x"})
                assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "stale", "x")

    def test_stale_submits_do_not_close_the_connection(self) -> None:
        _, factory, _ = setup()
        client = Client(factory)
        client.received()
        for i in range(30):
            assert client.ask({"type": "SUBMIT", "job": "old", "nonce": i})["code"] == "stale"
        assert not client.transport.disconnecting and client.proto.errors == 0

    def test_a_nonce_missing_the_bits_is_an_invalid_cheese(self) -> None:
        node, factory, _ = setup(bits=12)
        client = Client(factory)
        (work,) = client.received()
        submit = {"type": "SUBMIT", "job": work["job"], "nonce": bad_nonce(work), "id": 3}
        reply = client.ask(submit)
        assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "invalid-cheese", 3)
        assert node.stack.height == 0

    def test_a_cheese_the_node_refuses_is_an_invalid_cheese(self) -> None:
        node, factory, _ = setup()
        client = Client(factory)
        (work,) = client.received()

        def refuse(cheese: Any, source: Any = None, check_signatures: bool = True) -> Any:
            raise InvalidCheese("tx-balance", "transaction 0: not enough coins")

        self.patch(node, "submit_cheese", refuse)
        reply = client.ask({"type": "SUBMIT", "job": work["job"], "nonce": good_nonce(work)})
        assert (reply["type"], reply["code"]) == ("ERROR", "invalid-cheese")
        assert "not enough coins" in reply["message"]

    def test_a_store_that_cannot_write_is_busy(self) -> None:
        node, factory, _ = setup()
        client = Client(factory)
        (work,) = client.received()

        def closed(cheese: Any, source: Any = None, check_signatures: bool = True) -> Any:
            raise StorageError("cannot write stack.sqlite3: Cannot operate on a closed database.")

        self.patch(node, "submit_cheese", closed)
        submit = {"type": "SUBMIT", "job": work["job"], "nonce": good_nonce(work), "id": 4}
        reply = client.ask(submit)
        assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "busy", 4)

    def test_largest_nonce_is_allowed(self) -> None:
        _, factory, _ = setup(bits=12)
        client = Client(factory)
        (work,) = client.received()
        submit = {"type": "SUBMIT", "job": work["job"], "nonce": NONCE_LIMIT - 1, "id": 1}
        reply = client.ask(submit)
        assert (
            reply["type"] == "SUBMIT_REPLY" or reply["code"] == "invalid-cheese"
        )  # in range: not bad-message


BAD_SUBMITS = [  # SUBMIT lines refused as bad-message, the connection kept
    b'{"type":"SUBMIT","id":1,"nonce":5}',
    b'{"type":"SUBMIT","id":1,"job":true,"nonce":5}',
    b'{"type":"SUBMIT","id":1,"job":[1],"nonce":5}',
    b'{"type":"SUBMIT","id":1,"job":null,"nonce":5}',
    b'{"type":"SUBMIT","id":1,"job":1}',
    b'{"type":"SUBMIT","id":1,"job":1,"nonce":-1}',
    b'{"type":"SUBMIT","id":1,"job":1,"nonce":18446744073709551616}',
    b'{"type":"SUBMIT","id":1,"job":1,"nonce":"5"}',
    b'{"type":"SUBMIT","id":1,"job":1,"nonce":1.5}',
    b'{"type":"SUBMIT","id":1,"job":1,"nonce":true}',
    # a job out of the protocol's integer range is malformed, not stale
    b'{"type":"SUBMIT","id":1,"job":9223372036854775808,"nonce":5}',
    b'{"type":"SUBMIT","id":1,"job":-5,"nonce":5}',
    b'{"type":"SUBMIT","id":1,"job":"%s","nonce":5}' % (b"j" * 65),
]


class BadInputTests(SynchronousTestCase):
    """Malformed SUBMIT fields, unknown types and the error limit."""

    def test_bad_message_fields(self) -> None:
        for line in BAD_SUBMITS:
            with case(line=line):
                node, factory, _ = setup()
                client = Client(factory)
                client.received()
                reply = client.ask(line)
                assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "bad-message", 1)
                assert not client.transport.disconnecting and node.stack.height == 0

    def test_unknown_type_and_error_limit(self) -> None:
        _, factory, _ = setup()
        client = Client(factory)
        client.received()
        assert client.ask({"type": "GET_WORK", "id": "q"})["code"] == "unknown-type"
        for _ in range(9):
            client.send({"type": "SUBMIT", "job": 1})
        assert client.transport.disconnecting
