"""Simulated CPU time (issue 31, ``--verify-us``): a member validating a
cheese sends nothing and reads nothing until it is done (one CPU per member),
so a cheese of many payments crosses each hop later."""

from __future__ import annotations

from typing import List

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.sim.clock import HeapClock
from cheesecoin.sim.config import CHEESE_US, SimConfig
from cheesecoin.sim.link import Pipe, SimTransport
from cheesecoin.sim.world import Simulation


class End:
    """A member as a pipe sees it: its CPU is busy until ``busy_until``, which the
    pipes read in the members' array of these times, at the member's index."""

    def __init__(self, busy: List[float], index: int) -> None:
        self.busy, self.index = busy, index

    @property
    def busy_until(self) -> float:
        return self.busy[self.index]

    @busy_until.setter
    def busy_until(self, when: float) -> None:
        self.busy[self.index] = when


class Sink:
    def __init__(self, clock: HeapClock) -> None:
        self.clock = clock
        self.got: list = []

    def dataReceived(self, data: bytes) -> None:
        self.got.append((round(self.clock.seconds(), 6), data))


class BusyLinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = HeapClock()
        busy = [0.0, 0.0]
        self.a, self.b = End(busy, 0), End(busy, 1)
        self.ab = Pipe(self.clock, 0.05, 0, (self.a, self.b), None, busy=busy)
        self.ta = SimTransport(self.ab, ("10.0.0.1", 1), ("10.0.0.2", 2))
        self.tb = SimTransport(
            Pipe(self.clock, 0.05, 0, (self.b, self.a), None, busy=busy),
            ("10.0.0.2", 2),
            ("10.0.0.1", 1),
        )
        self.ab.receiver = self.tb
        self.sink = Sink(self.clock)
        self.tb.protocol = self.sink

    def test_a_busy_sender_writes_when_it_is_done(self) -> None:
        self.a.busy_until = 0.2
        self.ta.write(b"x")
        self.clock.advance(1)
        self.assertEqual(self.sink.got, [(0.25, b"x")])

    def test_an_arrival_waits_for_a_busy_receiver_and_what_came_meanwhile_comes_with_it(
        self,
    ) -> None:
        self.ta.write(b"one ")
        self.clock.advance(0.01)
        self.ta.write(b"two")
        self.b.busy_until = 0.3  # validating from 0.01 to 0.3
        self.clock.advance(1)
        self.assertEqual(self.sink.got, [(0.3, b"one two")])

    def test_without_cpu_the_ends_are_not_consulted(self) -> None:
        pipe = Pipe(self.clock, 0.05, 0, ("a", "b"), None)
        sink = Sink(self.clock)
        t = SimTransport(pipe, ("10.0.0.2", 2), ("10.0.0.1", 1))
        t.protocol = sink
        pipe.receiver = t
        pipe.send(b"y")
        self.clock.advance(1)
        self.assertEqual(sink.got, [(0.05, b"y")])


def propagation(verify_us: float) -> dict:
    sim = Simulation(
        SimConfig(
            members=12,
            cheeses=6,
            spacing=10,
            txs_per_cheese=60,
            seed=5,
            latency=(20, 20),
            verify_us=verify_us,
        )
    )
    f = sim.run()
    assert f["agreement"], f
    return f


class ValidationTimeTests(SynchronousTestCase):
    def test_validation_time_delays_propagation_by_about_its_cost_per_hop(self) -> None:
        free, busy = propagation(0), propagation(2000)  # 2 ms a payment
        self.assertEqual(free["cheeses_mined"], busy["cheeses_mined"])
        self.assertGreater(busy["transactions"], 30)
        # A cheese of T payments costs 2 ms x T + 60 us at the miner and at every
        # hop: with about 5 payments a cheese and 2 hops, 20 ms and more.
        gain = busy["propagation_ms"]["p50"] - free["propagation_ms"]["p50"]
        self.assertGreater(gain, 10, (free["propagation_ms"], busy["propagation_ms"]))
        self.assertEqual(
            free["propagation_limit_ms"], busy["propagation_limit_ms"]
        )  # the same graph

    def test_a_cheese_without_payments_costs_the_constant(self) -> None:
        sim = Simulation(SimConfig(members=2, verify_us=500))
        self.assertAlmostEqual(
            sim.cheese_cost({"unit_of_information": {"transactions": []}}), CHEESE_US / 1e6
        )
        self.assertAlmostEqual(
            sim.cheese_cost({"unit_of_information": {"transactions": [{}] * 10}}),
            CHEESE_US / 1e6 + 0.005,
        )
        self.assertAlmostEqual(sim.cheese_cost({"bad": 1}), CHEESE_US / 1e6)
