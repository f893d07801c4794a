"""The propagation limit's graph: each member's links, remembered between cheeses, are
the links as they stand (read afresh) at every cheese found, with members coming and
going."""

from __future__ import annotations

from typing import Any, Dict

from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.graph import links
from cheesecoin.sim.world import Simulation


def test_remembered_edges_are_the_links_read_afresh_at_every_cheese(monkeypatch: Any) -> None:
    checked: Dict[str, int] = {"finds": 0, "members": 0, "changed": 0, "wrong": 0}
    before: Dict[int, Any] = {}
    limits = Simulation._limits

    def fresh_limits(self: Simulation, source: Any) -> Dict[int, float]:
        for m in self.members:
            if m.alive:
                edges = self.graph.edges(m)
                checked["wrong"] += edges != tuple(links(m))  # (a raise here is only counted)
                checked["members"] += 1
                checked["changed"] += before.get(m.index) is not edges
                before[m.index] = edges
        checked["finds"] += 1
        return limits(self, source)

    monkeypatch.setattr(Simulation, "_limits", fresh_limits)
    config = SimConfig(members=25, cheeses=12, spacing=6, seed=3, churn=10, late_joiners=4)
    figures = Simulation(config).run()
    assert figures["cheeses_mined"] == 12 and figures["failures"] == 0
    assert checked["finds"] >= 12 and checked["wrong"] == 0
    # the links did change between cheeses (members came and went), and were mostly kept
    assert 0 < checked["changed"] < checked["members"]


def test_a_member_leaving_changes_its_peers_edges_before_they_hear_of_it() -> None:
    """The far end is gone (its connection not yet closed here): no edge to it."""
    from types import SimpleNamespace

    from cheesecoin.sim.clock import HeapClock
    from cheesecoin.sim.graph import LinkGraph
    from cheesecoin.sim.link import Pipe, SimTransport

    far = SimpleNamespace(index=7, alive=True)
    transport = SimTransport(Pipe(HeapClock(), 0.05, 0, ("a", "b"), None), ("a", 1), ("b", 2))
    transport.remote = far
    member = SimpleNamespace(
        index=1, manager=SimpleNamespace(peers={"b": SimpleNamespace(transport=transport)})
    )
    graph = LinkGraph()
    assert graph.edges(member) == ((7, 0.05),)  # type: ignore[arg-type]
    far.alive = False
    graph.came_or_went()
    assert graph.edges(member) == ()  # type: ignore[arg-type]


def test_a_member_that_left_is_not_remembered() -> None:
    """What was remembered of its connections (protocols, transports) is let go."""
    from types import SimpleNamespace

    from cheesecoin.sim.graph import LinkGraph

    graph = LinkGraph()
    members = [SimpleNamespace(index=i, manager=SimpleNamespace(peers={})) for i in range(3)]
    for m in members:
        assert graph.edges(m) == ()  # type: ignore[arg-type]
    graph.came_or_went(members[1])  # type: ignore[arg-type]
    assert graph.remembered() == 2
