"""``twistd cheesetracker``: options and service of the tracker (docs/protocol.md s.2 and s.8).

twistd -n cheesetracker --port 24330 [--interface 0.0.0.0] [--timeout 90]
                        [--max-members 10000] [--max-per-ip 256]
"""

from __future__ import annotations

import math
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.python import usage

from cheesecoin.tracker.registry import DEFAULT_MAX_MEMBERS
from cheesecoin.tracker.server import DEFAULT_MAX_PER_IP, DEFAULT_TIMEOUT, TrackerFactory
from cheesecoin.util.services import (
    ErrorFirstOptions,
    ListeningEndpoint,
    ServerService,
    integer_option,
    interface_option,
    server_endpoint,
)
from cheesecoin.wire.limits import TRACKER_PORT

# File descriptors the process needs besides its connections (log, pipes, ...).
_SPARE_FDS = 64
# Pending connections the kernel may queue: many members reconnect at once
# after a tracker restart (Twisted's default is 50).
LISTEN_BACKLOG = 1024


class Options(ErrorFirstOptions):
    """Command-line options of ``twistd cheesetracker``."""

    command = "cheesetracker"
    synopsis = (
        "[--port P] [--interface IP] [--timeout S] [--max-members N] [--max-per-ip N] "
        "[--metrics-port M]"
    )
    longdesc = (
        "Run the CheeseCoin tracker, the rendezvous server where members register "
        "their listening address and learn of up to 10 other members."
    )
    optParameters = [
        [
            "port",
            "p",
            TRACKER_PORT,
            "TCP port to listen on, 1-65535 (0: any free port, logged at start).",
        ],
        [
            "interface",
            "i",
            "0.0.0.0",
            "IP address to listen on (0.0.0.0: every IPv4 interface; :: for IPv6).",
        ],
        [
            "timeout",
            "t",
            DEFAULT_TIMEOUT,
            "Seconds of silence after which a member is removed and its connection closed "
            "(members PING every 30).",
        ],
        [
            "max-members",
            None,
            DEFAULT_MAX_MEMBERS,
            "Most members registered at once; a REGISTER beyond it gets ERROR busy.",
        ],
        [
            "max-per-ip",
            None,
            DEFAULT_MAX_PER_IP,
            "Most simultaneous connections from one IP address; more are refused.",
        ],
        [
            "metrics-port",
            None,
            0,
            "Serve Prometheus metrics at /metrics on this TCP port (0: off).",
        ],
        ["metrics-interface", None, "127.0.0.1", "IP address the metrics port listens on."],
    ]

    def postOptions(self) -> None:
        self["port"] = integer_option("port", self["port"], 0, 65535)
        self["max-members"] = integer_option("max-members", self["max-members"], 1)
        self["max-per-ip"] = integer_option("max-per-ip", self["max-per-ip"], 1)
        text = str(self["timeout"]).strip()
        try:
            timeout = float(text)
        except ValueError:
            timeout = math.nan
        if not (math.isfinite(timeout) and timeout > 0):
            raise usage.UsageError(f"--timeout must be a positive number of seconds, not {text!r}")
        self["timeout"] = timeout
        self["interface"] = interface_option("interface", self["interface"])
        self["metrics-port"] = integer_option("metrics-port", self["metrics-port"], 0, 65535)
        self["metrics-interface"] = interface_option("metrics-interface", self["metrics-interface"])


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards ``wanted``; return the limit in force."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return wanted if soft == resource.RLIM_INFINITY else soft


class TrackerService(MultiService):
    """The tracker's services (listening port, metrics port, sweep); ``factory``
    is its ``TrackerFactory``, for tests and tools."""

    def __init__(self, factory: TrackerFactory) -> None:
        super().__init__()
        self.factory = factory


def makeService(config: Options, reactor: Any = reactor) -> TrackerService:
    """The tracker: a TCP listening service and the timeout sweep, on ``reactor``
    (twistd's; a test or a simulator may pass its own)."""
    max_members = config["max-members"]
    fd_limit = raise_fd_limit(max_members + 1024 + _SPARE_FDS)
    factory = TrackerFactory(
        timeout=config["timeout"],
        max_members=max_members,
        max_per_ip=config["max-per-ip"],
        max_connections=max(1, min(max_members + 1024, fd_limit - _SPARE_FDS)),
        clock=reactor,
    )
    top = TrackerService(factory)
    endpoint = server_endpoint(reactor, config["interface"], config["port"], backlog=LISTEN_BACKLOG)
    server = ServerService(ListeningEndpoint(endpoint, factory.listening), factory, "cheesetracker")
    server.setName("tracker")
    server.setServiceParent(top)
    if config["metrics-port"]:
        from cheesecoin.tracker.metrics import metrics_site

        metrics_endpoint = server_endpoint(
            reactor, config["metrics-interface"], config["metrics-port"]
        )
        metrics = ServerService(metrics_endpoint, metrics_site(factory), "cheesetracker", "metrics")
        metrics.setName("metrics")
        metrics.setServiceParent(top)
    sweeper = TimerService(factory.sweep_interval, factory.sweep)
    sweeper.clock = factory.clock
    sweeper.setName("sweep")
    sweeper.setServiceParent(top)
    return top
