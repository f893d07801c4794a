"""The tracker (docs/protocol.md section 2): registry, protocol with fakes, limits, options."""

from __future__ import annotations

import io
import json
import random
import sys

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.errors import ProtocolError
from cheesecoin.tracker import tap as tracker_tap
from cheesecoin.tracker.registry import TrackerRegistry
from cheesecoin.tracker.server import TrackerFactory, TrackerProtocol
from cheesecoin.wire.lineproto import BusyProtocol
from tests.cases import case

# -- the registry alone ------------------------------------------------------------


def filled(n: int, max_members: int = 10000) -> TrackerRegistry:
    registry = TrackerRegistry(max_members, random.Random(1))
    for i in range(n):
        registry.register(f"c{i}", "10.0.0.1", 5000 + i)
    return registry


class SamplingTests(SynchronousTestCase):
    """GET_PEERS' sample: ten others at most, random, never the asker, cheap."""

    def test_sample_size_and_never_the_asker(self) -> None:
        registry = filled(30)
        rng = random.Random(2)
        for i in range(30):
            peers = registry.sample(excluding=f"c{i}", rng=rng)
            assert len(peers) == 10
            assert f"c{i}" not in {m.conn_key for m in peers}
            assert len({m.address for m in peers}) == 10

    def test_sample_is_random(self) -> None:
        registry = filled(30)
        rng = random.Random(3)
        samples = set()
        seen = set()
        for _ in range(200):
            peers = registry.sample(excluding="c0", rng=rng)
            samples.add(tuple(sorted(m.port for m in peers)))
            seen.update(m.port for m in peers)
        assert len(samples) > 150  # C(29, 10) is about 20 million
        assert seen == set(range(5001, 5030))  # everyone but the asker shows up

    def test_fewer_than_ten_others_lists_them_all_in_random_order(self) -> None:
        for n in [0, 1, 2, 5, 10, 11]:
            with case(n=n):
                registry = filled(n)
                rng = random.Random(4)
                asker = "c0" if n else "nobody"
                others = {5000 + i for i in range(n) if f"c{i}" != asker}
                orders = set()
                for _ in range(50):
                    ports = [m.port for m in registry.sample(excluding=asker, rng=rng)]
                    assert len(ports) == len(set(ports)) == min(10, len(others))
                    assert set(ports) <= others
                    if len(others) <= 10:
                        assert set(ports) == others
                    orders.add(tuple(ports))
                if 3 <= len(others) <= 10:
                    assert len(orders) > 1

    def test_sample_for_an_unregistered_asker_and_by_address(self) -> None:
        registry = filled(3)
        assert {m.port for m in registry.sample(excluding="stranger")} == {5000, 5001, 5002}
        # The asker's own (host, port) is never returned either.
        sample = registry.sample(excluding="c0", exclude_address=("10.0.0.1", 5002))
        ports = {m.port for m in sample}
        assert ports == {5001}
        for _ in range(20):
            registry2 = filled(15)
            got = registry2.sample(excluding="c3", exclude_address=("10.0.0.1", 5009), k=13)
            assert {m.port for m in got} == set(range(5000, 5015)) - {5003, 5009}

    def test_sample_cost_does_not_grow_with_members(self) -> None:
        class RangeOnlyRandom(random.Random):
            def sample(self, population, k, **kwargs):  # type: ignore[override]
                assert isinstance(population, range)  # indices, not a copy of the members
                return super().sample(population, k, **kwargs)

        registry = filled(5000)
        assert len(registry.sample(excluding="c17", rng=RangeOnlyRandom(5))) == 10


class RegistryTests(SynchronousTestCase):
    """Registering, replacing, moving, expiring and the member cap, without a protocol."""

    def test_register_replaces_same_address_and_moves(self) -> None:
        registry = TrackerRegistry(10)
        registry.register("a", "h", 1)
        member, removals = registry.register("b", "h", 1)  # same (host, port), other connection
        assert len(registry) == 1 and registry.get("b") is member and "a" not in registry
        assert [(r.member.conn_key, r.active) for r in removals] == [("a", 0)]
        member, removals = registry.register("b", "h", 2)  # the same connection moves
        assert len(registry) == 1 and member.address == ("h", 2)
        assert removals[0].reason.startswith("moved")
        assert registry.sample(excluding="x") == [member]
        registry.register("c", "h", 1)
        _, removals = registry.register("c", "h", 2)  # moves onto b's address: b is replaced
        assert len(registry) == 1 and registry.get("c").address == ("h", 2)
        assert {r.member.conn_key for r in removals} == {"b", "c"}
        _, removals = registry.register("c", "h", 2)  # the same again: a refresh
        assert removals == [] and len(registry) == 1

    def test_unregister_and_index_consistency(self) -> None:
        registry = filled(50)
        rng = random.Random(6)
        alive = {f"c{i}" for i in range(50)}
        for key in rng.sample(sorted(alive), 40):
            assert registry.unregister(key).conn_key == key
            alive.discard(key)
            assert registry.unregister(key) is None
            assert {m.conn_key for m in registry.members()} == alive
            assert all(registry.get(k).conn_key == k for k in alive)
        assert len(registry.sample(excluding=None, k=100)) == 10

    def test_touch_and_expire(self) -> None:
        registry = TrackerRegistry()
        registry.register("a", "h", 1, now=0)
        registry.register("b", "h", 2, now=10)
        registry.register("c", "h", 3, now=20)
        registry.touch("a", 50)
        registry.touch("nobody", 50)
        assert registry.expire(100, 90) == []  # b is silent exactly 90 s: not past
        assert [m.conn_key for m in registry.expire(100.5, 90)] == ["b"]
        assert [m.conn_key for m in registry.expire(200, 90)] == ["c", "a"]
        assert len(registry) == 0

    def test_max_members_busy(self) -> None:
        registry = filled(3, max_members=3)
        with self.assertRaises(ProtocolError) as info:
            registry.register("new", "10.0.0.2", 1)
        assert info.exception.code == "busy"
        registry.register("new", "10.0.0.1", 5000)  # replacing does not add
        registry.register("c1", "10.0.0.1", 7000)  # nor does moving
        assert len(registry) == 3


# -- the protocol, with a fake transport and clock -------------------------------------------


class Net:
    """A tracker factory on a ``task.Clock``, and fake connections to it."""

    def __init__(self, **kwargs) -> None:
        self.clock = task.Clock()
        kwargs.setdefault("rng", random.Random(7))
        self.factory = TrackerFactory(clock=self.clock, **kwargs)
        self.sweeper = TimerService(self.factory.sweep_interval, self.factory.sweep)
        self.sweeper.clock = self.clock
        self.sweeper.startService()
        self.next_port = 40000

    def connect(self, ip: str = "127.0.0.1"):
        self.next_port += 1
        addr = IPv4Address("TCP", ip, self.next_port)
        proto = self.factory.buildProtocol(addr)
        if isinstance(proto, BusyProtocol):  # turned away: ERROR busy, then closed
            transport = StringTransport(peerAddress=addr)
            proto.makeConnection(transport)
            assert transport.disconnecting
            [line] = transport.value().splitlines()
            assert json.loads(line)["code"] == "busy"
            return None
        proto.makeConnection(StringTransport(peerAddress=addr))
        return Conn(proto)

    def registered(self, *ports: int) -> list["Conn"]:
        """One connection from 127.0.0.1 registered at each port."""
        conns = [self.connect() for _ in ports]
        for conn, port in zip(conns, ports):
            conn.register(port)
        return conns

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class Conn:
    def __init__(self, proto: TrackerProtocol) -> None:
        self.proto = proto
        self.transport: StringTransport = proto.transport

    def send_raw(self, data: bytes) -> list[dict]:
        self.transport.clear()
        self.proto.dataReceived(data)
        return [json.loads(line) for line in self.transport.value().splitlines()]

    def ask(self, **msg) -> dict:
        got = self.send_raw(json.dumps(msg).encode() + b"\n")
        assert len(got) == 1, got
        return got[0]

    def register(self, port: int, **extra) -> dict:
        reply = self.ask(type="REGISTER", port=port, **extra)
        assert reply["type"] == "PEERS", reply
        return reply

    def drop(self) -> None:
        self.transport.loseConnection()
        self.proto.connectionLost(None)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


class LoggedCase(SynchronousTestCase):
    """Collects the lines logged at level info and above in ``self.log_lines``."""

    def setUp(self) -> None:
        self.log_lines: list[str] = []

        def observer(event) -> None:
            if event.get("log_level", LogLevel.info) >= LogLevel.info:
                self.log_lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)


def peers_of(reply: dict) -> set:
    assert reply["type"] == "PEERS"
    peers = [(p["host"], p["port"]) for p in reply["peers"]]
    assert len(peers) == len(set(peers)) <= 10
    assert all(set(p) == {"host", "port"} for p in reply["peers"])
    return set(peers)


class TrackerProtocolTests(LoggedCase):
    """REGISTER, GET_PEERS, UNREGISTER and PING over a fake transport, and what is logged."""

    def test_register_and_get_peers(self) -> None:
        net = Net()
        members = [net.connect() for _ in range(15)]
        for i, conn in enumerate(members):
            got = peers_of(conn.register(24331 + i))
            if i <= 10:
                assert got == {("127.0.0.1", 24331 + j) for j in range(i)}
            else:
                assert len(got) == 10
            assert ("127.0.0.1", 24331 + i) not in got
        assert len(net.factory.registry) == 15
        for i, conn in enumerate(members):
            got = peers_of(conn.ask(type="GET_PEERS"))
            assert len(got) == 10 and ("127.0.0.1", 24331 + i) not in got
        assert "Registered member 127.0.0.1:24331 (1 active)" in self.log_lines
        assert "Registered member 127.0.0.1:24345 (15 active)" in self.log_lines

    def test_register_with_host_and_replace(self) -> None:
        net = Net()
        a, b, c = net.connect(), net.connect(), net.connect()
        assert a.register(9000, host="example.org")["peers"] == []
        assert b.register(9000, host="example.org")["peers"] == []  # replaces a's registration
        assert c.register(9001)["peers"] == [{"host": "example.org", "port": 9000}]
        assert len(net.factory.registry) == 2
        replaced = "Removed member example.org:9000 (0 active): replaced"
        assert any(line.startswith(replaced) for line in self.log_lines)
        assert a.ask(type="GET_PEERS")["peers"] != []  # a is still connected, just not registered
        a.drop()
        assert len(net.factory.registry) == 2
        # null host means the connection's address
        d = net.connect("10.1.2.3")
        d.register(9002, host=None)
        assert ("10.1.2.3", 9002) in peers_of(c.ask(type="GET_PEERS"))

    def test_unregister_replies_ok_and_removes(self) -> None:
        net = Net()
        a, b = net.registered(1000, 1001)
        assert a.ask(type="UNREGISTER", id="u") == {"type": "OK", "id": "u"}
        assert peers_of(b.ask(type="GET_PEERS")) == set()
        assert a.ask(type="UNREGISTER") == {"type": "OK"}  # harmless when not registered
        assert not a.closed
        assert "Removed member 127.0.0.1:1000 (1 active): unregistered" in self.log_lines

    def test_removed_on_disconnect(self) -> None:
        net = Net()
        a, b = net.registered(1000, 1001)
        a.drop()
        assert peers_of(b.ask(type="GET_PEERS")) == set()
        assert net.factory.connection_count == 1
        assert "Removed member 127.0.0.1:1000 (1 active): disconnected" in self.log_lines

    def test_removed_after_silence_and_ping_keeps_alive(self) -> None:
        net = Net(timeout=90)
        quiet, pinger, watcher = net.registered(1000, 1001, 1002)
        for _ in range(4):
            net.advance(30)
            assert pinger.ask(type="PING", id=1) == {"type": "PONG", "id": 1}
            assert watcher.ask(type="GET_PEERS")["type"] == "PEERS"  # any message is activity
        assert len(net.factory.registry) == 2
        assert quiet.closed and quiet.transport.disconnected  # aborted, not flushed
        assert "Removed member 127.0.0.1:1000 (2 active): timeout" in self.log_lines
        assert peers_of(watcher.ask(type="GET_PEERS")) == {("127.0.0.1", 1001)}
        quiet.proto.connectionLost(None)  # the transport reports the close later
        assert len(net.factory.registry) == 2 and net.factory.connection_count == 2
        net.advance(89)
        assert len(net.factory.registry) == 2
        net.advance(2)
        assert len(net.factory.registry) == 0
        assert "Removed member 127.0.0.1:1001 (1 active): timeout" in self.log_lines
        assert "Removed member 127.0.0.1:1002 (0 active): timeout" in self.log_lines
        assert pinger.closed and watcher.closed

    def test_silent_unregistered_connection_is_dropped(self) -> None:
        net = Net(timeout=10)
        idle = net.connect()
        net.advance(9)
        assert not idle.closed
        net.advance(2)
        assert idle.closed
        idle.proto.connectionLost(None)
        assert net.factory.connection_count == 0 and not net.factory.per_ip

    def test_silent_while_closing_is_aborted(self) -> None:
        net = Net(timeout=10)
        conn = net.connect()
        for _ in range(10):
            conn.send_raw(b"x\n")
        assert conn.closed and not conn.transport.disconnected
        net.advance(11)  # still not closed (a peer that never reads): abort it
        assert conn.transport.disconnected

    def test_listening_logs_the_exact_line(self) -> None:
        TrackerFactory(clock=task.Clock()).listening()
        assert self.log_lines == ["Tracker waiting for new connection."]


class TrackerLimitTests(LoggedCase):
    """Error codes, too-long lines, ten errors, connection caps and back-pressure."""

    def test_every_error_code_with_id(self) -> None:
        net = Net()
        cases = [
            (b"{nope", "bad-json"),
            (b'{"type":"REGISTER","s":"\xff"}', "bad-json"),
            (b'{"type":"REGISTER","id":1}', "bad-message"),
            (b'{"type":"REGISTER","port":"24331","id":2}', "bad-message"),
            (b'{"type":"REGISTER","port":true,"id":3}', "bad-message"),
            (b'{"type":"REGISTER","port":0,"id":4}', "bad-message"),
            (b'{"type":"REGISTER","port":65536,"id":5}', "bad-message"),
            (b'{"type":"REGISTER","port":24331.0,"id":6}', "bad-message"),
            (b'{"type":"REGISTER","port":24331,"host":5,"id":7}', "bad-message"),
            (b'{"type":"REGISTER","port":24331,"host":"a b","id":8}', "bad-message"),
            (b'{"type":"HELLO","id":"nine"}', "unknown-type"),
        ]
        for line, code in cases:
            conn = net.connect()
            got = conn.send_raw(line + b"\n")
            assert len(got) == 1, (line, got)
            assert got[0]["type"] == "ERROR" and got[0]["code"] == code, (line, got)
            request = json.loads(line) if code != "bad-json" else {}
            assert got[0].get("id") == request.get("id")
            assert not conn.closed
        assert len(net.factory.registry) == 0  # nothing was registered by bad requests

    def test_too_long_closes(self) -> None:
        net = Net()
        conn = net.connect()
        got = conn.send_raw(b'{"type":"PING","pad":"' + b"x" * (4 * 1024 * 1024) + b'"}\n')
        assert [m["code"] for m in got] == ["too-long"]
        assert conn.closed
        assert conn.transport.producer is None  # unregistered, or the close would never finish

    def test_ten_errors_close_and_registration_goes(self) -> None:
        net = Net()
        conn, other = net.registered(1000, 1001)
        for i in range(9):
            conn.send_raw(b'{"type":"REGISTER","id":%d}\n' % i)
        assert not conn.closed
        got = conn.send_raw(b'{"type":"BAD"}\n{"type":"PING"}\n')
        assert [m["code"] for m in got] == ["unknown-type"]
        assert conn.closed
        conn.proto.connectionLost(None)
        assert peers_of(other.ask(type="GET_PEERS")) == set()

    def test_max_members_busy_over_protocol(self) -> None:
        net = Net(max_members=2)
        a, b = net.registered(1, 2)
        c = net.connect()
        error = c.ask(type="REGISTER", port=3, id="r")
        assert error["type"] == "ERROR" and error["code"] == "busy" and error["id"] == "r"
        b.drop()
        assert peers_of(c.register(3)) == {("127.0.0.1", 1)}

    def test_per_ip_limit_in_build_protocol(self) -> None:
        net = Net(max_per_ip=3)
        conns = [net.connect("10.0.0.1") for _ in range(3)]
        assert net.connect("10.0.0.1") is None
        assert net.connect("10.0.0.2") is not None  # another address is fine
        conns[0].drop()
        assert net.connect("10.0.0.1") is not None
        assert net.factory.per_ip["10.0.0.1"] == 3

    def test_total_connection_limit(self) -> None:
        net = Net(max_connections=4, max_per_ip=100)
        conns = [net.connect(f"10.0.0.{i}") for i in range(4)]
        assert net.connect("10.0.1.1") is None
        conns[2].drop()
        conns[2].proto.connectionLost(None)  # a second report changes nothing
        assert net.factory.connection_count == 3
        assert net.connect("10.0.1.1") is not None

    def test_backpressure_pauses_reading(self) -> None:
        net = Net()
        conn = net.connect()
        assert conn.transport.producer is conn.proto and conn.transport.streaming
        conn.proto.pauseProducing()
        assert conn.transport.producerState == "paused"
        conn.proto.resumeProducing()
        assert conn.transport.producerState == "producing"

    def test_bad_input_leaves_others_served(self) -> None:
        net = Net()
        good, bad = net.connect(), net.connect()
        good.register(1)
        for data in [
            b"\x00" * 1000 + b"\n",
            b"[" * 50000 + b"\n",
            b'{"type":"REGISTER","port":1e999}\n',
        ]:
            bad.send_raw(data)
        assert peers_of(bad.ask(type="GET_PEERS")) == {("127.0.0.1", 1)}
        assert good.ask(type="PING") == {"type": "PONG"}


# -- options and service -------------------------------------------------------------


def parse(*args: str) -> tracker_tap.Options:
    options = tracker_tap.Options()
    options.parseOptions(list(args))
    return options


BAD_OPTIONS = [  # options refused, and the word their error names
    (["--port", "abc"], "--port"),
    (["--port", "65536"], "--port"),
    (["--port", "-1"], "--port"),
    (["--port", "1.5"], "--port"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "-3"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--timeout", "soon"], "--timeout"),
    (["--max-members", "0"], "--max-members"),
    (["--max-members", "many"], "--max-members"),
    (["--max-per-ip", "0"], "--max-per-ip"),
    (["--interface", "localhost:80"], "--interface"),
    (["--interface", "300.1.1.1"], "--interface"),
]


class OptionsTests(SynchronousTestCase):
    """twistd cheesetracker's options and the service they make."""

    def test_options_defaults(self) -> None:
        options = parse()
        assert options["port"] == 24330
        assert options["interface"] == "0.0.0.0"
        assert options["timeout"] == 90.0
        assert options["max-members"] == 10000
        assert options["max-per-ip"] >= 100
        options = parse(
            "--port",
            "1",
            "--timeout",
            "0.5",
            "--max-members",
            "3",
            "--max-per-ip",
            "1",
            "-i",
            "127.0.0.1",
        )
        assert (
            options["port"],
            options["timeout"],
            options["max-members"],
            options["max-per-ip"],
        ) == (1, 0.5, 3, 1)

    def test_options_validation(self) -> None:
        for args, word in BAD_OPTIONS:
            with case(args=args, word=word):
                said = io.StringIO()
                self.patch(sys, "stderr", said)  # where the one-line error goes first
                with self.assertRaises(usage.UsageError) as info:
                    parse(*args)
                assert word in str(info.exception)
                assert args[1] in str(info.exception)
                assert said.getvalue() == f"twistd cheesetracker: error: {info.exception}\n"

    def test_make_service(self) -> None:
        service = tracker_tap.makeService(
            parse("--port", "0", "--interface", "127.0.0.1", "--timeout", "8")
        )
        services = {s.name: s for s in service}
        assert isinstance(services["tracker"], StreamServerEndpointService)
        assert isinstance(services["sweep"], TimerService)
        factory = service.factory
        assert services["sweep"].call[0] == factory.sweep
        assert services["sweep"].step == factory.sweep_interval == 1.0
        assert factory.timeout == 8.0 and factory.max_per_ip == 256

    def test_make_service_ipv6_interface(self) -> None:
        from twisted.internet.endpoints import TCP6ServerEndpoint

        service = tracker_tap.makeService(parse("--port", "0", "--interface", "::1"))
        endpoint = {s.name: s for s in service}["tracker"].endpoint
        assert isinstance(endpoint._endpoint, TCP6ServerEndpoint)


# -- addresses: canonical forms, one's own address, no squatting (docs/protocol.md section 2) --


class AddressTests(SynchronousTestCase):
    """Canonical addresses, one's own address, no squatting (docs/protocol.md section 2)."""

    def test_odd_spellings_of_an_address_are_refused(self) -> None:
        for spelling in [
            "127.1",
            "0x7f000001",
            "2130706433",
            "127.000.000.001",
            "0x7f.1",
            "::ffff:7f00:1",
        ]:
            with case(spelling=spelling):
                conn = Net().connect("127.0.0.1")
                error = conn.ask(type="REGISTER", host=spelling, port=24331, id=1)
                assert error["type"] == "ERROR" and error["code"] == "bad-message"
                assert error["id"] == 1

    def test_one_address_in_many_spellings_is_listed_at_most_once_per_canonical_form(self) -> None:
        net = Net()
        for spelling in [
            "127.0.0.1",
            "127.1",
            "0x7f000001",
            "2130706433",
            "127.000.000.001",
            "::1",
            "localhost",
            "LOCALHOST",
        ]:
            net.connect("127.0.0.1").send_raw(
                json.dumps({"type": "REGISTER", "host": spelling, "port": 5000}).encode() + b"\n"
            )
        listed = sorted(m.address for m in net.factory.registry.members())
        assert listed == [("127.0.0.1", 5000), ("::1", 5000), ("localhost", 5000)]

    def test_an_ip_host_must_be_the_connections_own_address_unless_loopback(self) -> None:
        net = Net()
        stranger = net.connect("203.0.113.5")
        error = stranger.ask(type="REGISTER", host="198.51.100.7", port=24331)
        assert (
            error["code"] == "bad-message"
            and "not the address this connection comes from" in error["message"]
        )
        assert stranger.register(24331, host="203.0.113.5")["type"] == "PEERS"
        reply = net.connect("203.0.113.6").register(24331, host="Member.Example.ORG")
        assert reply["type"] == "PEERS"
        assert ("member.example.org", 24331) in {m.address for m in net.factory.registry.members()}
        assert (
            net.connect("127.0.0.1").register(24331, host="198.51.100.7")["type"] == "PEERS"
        )  # loopback: tests, proxies

    def test_a_registration_is_replaced_only_from_the_same_remote_address(self) -> None:
        net = Net()
        owner = net.connect("203.0.113.5")
        owner.register(24331)
        # loopback may name any host, but not take a registration
        squatter = net.connect("127.0.0.1")
        error = squatter.ask(type="REGISTER", host="203.0.113.5", port=24331, id="s")
        assert (
            error["code"] == "busy"
            and error["id"] == "s"
            and "registered from another address" in error["message"]
        )
        squatter.drop()  # and its disconnect delists nobody
        assert [m.address for m in net.factory.registry.members()] == [("203.0.113.5", 24331)]
        assert owner.ask(type="PING")["type"] == "PONG"
        again = net.connect(
            "203.0.113.5"
        )  # the member itself, reconnecting: replaces its old registration
        again.register(24331)
        assert (
            net.factory.registry.get(again.proto) is not None
            and net.factory.registry.get(owner.proto) is None
        )
        assert net.factory.refused_registrations == 1

    def test_ipv4_mapped_remote_addresses_compare_as_ipv4(self) -> None:
        from cheesecoin.tracker.registry import registrable_host
        from cheesecoin.util.addresses import canonical_ip

        assert canonical_ip("::ffff:203.0.113.5") == "203.0.113.5"
        assert registrable_host("203.0.113.5", canonical_ip("::ffff:203.0.113.5")) == "203.0.113.5"

    def test_per_address_limits_never_apply_to_loopback_but_the_total_does(self) -> None:
        net = Net(max_per_ip=256, max_connections=400)
        conns = [net.connect("127.0.0.1") for _ in range(300)]  # 300 members on one host
        assert all(c is not None for c in conns)
        for i, conn in enumerate(conns):
            conn.register(30000 + i)
        assert len(net.factory.registry) == 300
        more = [net.connect("127.0.0.1") for _ in range(100)]
        assert (
            all(c is not None for c in more) and net.connect("127.0.0.1") is None
        )  # the total: ERROR busy

    def test_a_connection_turned_away_is_told_why_before_the_close(self) -> None:
        factory = TrackerFactory(clock=task.Clock(), max_per_ip=1)
        factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)).makeConnection(StringTransport())
        proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 2))
        transport = StringTransport()
        proto.makeConnection(transport)
        assert json.loads(transport.value()) == {
            "type": "ERROR",
            "code": "busy",
            "message": "1 connections from 10.0.0.1 already",
        }
        assert transport.disconnecting
