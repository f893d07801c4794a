"""The tracker's Prometheus metrics, served by ``--metrics-port`` at ``/metrics``:
members registered now, registrations so far, refusals by kind (connections
turned away for a limit, registrations refused)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.web import resource, server

if TYPE_CHECKING:
    from cheesecoin.tracker.server import TrackerFactory


class TrackerCollector:
    """Reads the figures from a TrackerFactory at each scrape."""

    def __init__(self, factory: TrackerFactory) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        f = self.factory
        yield GaugeMetricFamily(
            "cheesecoin_tracker_members", "Members registered now", value=len(f.registry)
        )
        yield GaugeMetricFamily(
            "cheesecoin_tracker_connections", "Open connections", value=f.connection_count
        )
        yield CounterMetricFamily(
            "cheesecoin_tracker_registrations", "Registrations accepted", value=f.registrations
        )
        refusals = CounterMetricFamily(
            "cheesecoin_tracker_refusals", "Refusals, by kind", labels=["kind"]
        )
        refusals.add_metric(["connection"], f.refused)
        refusals.add_metric(["registration"], f.refused_registrations)
        yield refusals


class MetricsPage(resource.Resource):
    """``/metrics`` of the tracker (and a 404 for anything else)."""

    isLeaf = True

    def __init__(self, factory: TrackerFactory) -> None:
        super().__init__()
        self.registry = CollectorRegistry()
        self.registry.register(TrackerCollector(factory))

    def render_GET(self, request: server.Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found: the tracker serves /metrics\n"
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self.registry)


def metrics_site(factory: TrackerFactory) -> server.Site:
    site = server.Site(MetricsPage(factory))
    site.displayTracebacks = False
    site.noisy = False
    return site
