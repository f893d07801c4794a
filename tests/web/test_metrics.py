"""``GET /metrics`` (Prometheus, parsed with prometheus_client's own parser) and
``GET /api/health``: the figures move as cheeses, refusals, reorganisations
and messages happen; health goes 503 -> 200 across a sync."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.testing.fakes import NOW, Raw, chain, make_member, ready_raw
from cheesecoin.web.api import make_site
from cheesecoin.web.metrics import MemberMetrics


def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


def get(site, path: str):
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(f"GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n".encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    channel.connectionLost(None)
    return int(head.split()[1]), head.decode("latin-1"), body


def samples(metrics: MemberMetrics) -> dict:
    """{(name, frozenset(labels)): value} of every sample, through the real exposition."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def member_with_metrics(cheeses=()):
    c = clock()
    manager = make_member("aa", c, list(cheeses))
    metrics = MemberMetrics(manager.node)
    manager.traffic = metrics.traffic
    return manager, metrics, c


class MetricsAndHealthTests(SynchronousTestCase):
    """The figures of /metrics as things happen, and /api/health across a sync."""

    def test_the_metrics_move_with_cheeses_refusals_reorganisations_and_messages(self) -> None:
        base = chain(3)
        manager, metrics, _ = member_with_metrics(base[:1])
        raw = ready_raw(manager, host="10.0.0.5")
        before = samples(metrics)
        assert before[("cheesecoin_height", frozenset())] == 1
        assert before[("cheesecoin_cheeses_accepted_total", frozenset())] == 0
        raw.send({"type": "ANNOUNCE", "cheese": base[1]}, {"type": "ANNOUNCE", "cheese": base[2]})
        fork = chain(3, parent=base[0], miner="cd" * 32)  # a longer branch from cheese 1
        raw.send(
            {"type": "ANNOUNCE", "cheese": dict(chain(1, parent=base[2])[0], bits=9)}
        )  # tampered: rule 5, smell
        for cheese in fork:
            raw.send({"type": "ANNOUNCE", "cheese": cheese})
        raw.send({"type": "STATS", "id": 1}, {"type": "NOT_A_TYPE"})
        after = samples(metrics)
        assert after[("cheesecoin_height", frozenset())] == 4
        assert after[("cheesecoin_cheeses_accepted_total", frozenset())] == 2 + 3
        assert after[("cheesecoin_cheeses_refused_total", frozenset({("rule", "smell")}))] == 1
        assert after[("cheesecoin_reorgs_total", frozenset())] == 1
        assert after[("cheesecoin_reorg_depth_count", frozenset())] == 1
        assert after[("cheesecoin_reorg_depth_sum", frozenset())] == 2  # cheeses 2 and 3 abandoned
        assert (
            after[
                (
                    "cheesecoin_messages_total",
                    frozenset({("type", "ANNOUNCE"), ("direction", "in")}),
                )
            ]
            == 6
        )
        assert (
            after[
                (
                    "cheesecoin_messages_total",
                    frozenset({("type", "STATS_REPLY"), ("direction", "out")}),
                )
            ]
            == 1
        )
        assert (
            after[
                ("cheesecoin_messages_total", frozenset({("type", "other"), ("direction", "in")}))
            ]
            == 1
        )
        assert after[("cheesecoin_bytes_total", frozenset({("direction", "in")}))] > 6 * 200
        assert after[("cheesecoin_cheese_arrival_seconds_count", frozenset())] == 5
        assert after[("cheesecoin_mempool_transactions", frozenset())] == 0
        assert after[("cheesecoin_peers", frozenset())] == 1

    def test_metrics_are_served_at_slash_metrics_on_a_registry_of_their_own(self) -> None:
        manager, metrics, _ = member_with_metrics(chain(2))
        other = MemberMetrics(
            make_member("bb", clock()).node
        )  # a second member in the process: no clash
        status, head, body = get(make_site(manager.node, metrics), "/metrics")
        assert status == 200 and "text/plain; version=0.0.4" in head
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert {
            "cheesecoin_height",
            "cheesecoin_peers",
            "cheesecoin_mempool_transactions",
            "cheesecoin_hashrate",
            "cheesecoin_cheeses_accepted",
            "cheesecoin_cheeses_refused",
            "cheesecoin_reorgs",
            "cheesecoin_reorg_depth",
            "cheesecoin_messages",
            "cheesecoin_bytes",
            "cheesecoin_cheese_arrival_seconds",
        } <= names
        assert samples(other)[("cheesecoin_height", frozenset())] == 0

    def test_health_is_503_while_downloading_from_a_peer_with_more_work_then_200(self) -> None:
        cheeses = chain(20)
        manager, metrics, _ = member_with_metrics()
        site = make_site(manager.node, metrics)
        status, _, body = get(site, "/api/health")
        assert status == 200 and json.loads(body)["ready"] is True
        raw = Raw(manager, host="10.0.0.7")
        replies = raw.hello(
            height=20, tip=cheeses[-1]["smell"], work=str(2 * 21)
        )  # more work: it downloads
        asks = [m for m in replies if m["type"] == "GET_CHEESES"]
        assert asks
        status, _, body = get(site, "/api/health")
        answer = json.loads(body)
        assert status == 503 and answer["ready"] is False and "downloading from" in answer["reason"]
        raw.send({"type": "CHEESES", "cheeses": cheeses, "id": asks[0]["id"]})
        status, _, body = get(site, "/api/health")
        assert status == 200 and json.loads(body) == {
            "ready": True,
            "height": 20,
            "tip": cheeses[-1]["smell"],
        }
