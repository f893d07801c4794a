"""``twistd cheesemember``: options and services of a member (docs/protocol.md s.5 and s.8).

    twistd -n cheesemember [--tracker HOST:PORT ...] [--port 24331] [--data-dir DIR]
                           [--network FILE] [--mine | --no-mine] [--miner-address A]
                           [--api-port 24332] [--miner-port 24333]
                           [--connect HOST:PORT[@NODE_ID] ...] [--require-tls] [--features F]

With ``tls`` among its features (``all`` lists it) the member has an
identity key in its data directory (``identity.key``, made at the first
start) and its node_id is that key; its links to members that list ``tls``
too are encrypted (docs/protocol.md section 5.3, ``cheesecoin.member.links``).

The stack is loaded from the data directory before the member listens:
every start rebuilds the tree, the ledger and the indexes from the stored
cheeses (signatures are not checked again) and refuses a corrupted database
with one clear line. ``--reindex`` first rebuilds the database itself
(``cheesecoin.reindex``): every stored cheese that still parses is
re-validated from scratch, signatures included, into a fresh database that
replaces the old one (kept as ``stack.sqlite3.bak``); the member then starts
at the longest valid prefix of what it had.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.python import usage

from cheesecoin.core.cheese import NetworkError, load_network
from cheesecoin.member import links
from cheesecoin.member.lifecycle import MemberService
from cheesecoin.p2p.features import FeaturesError, parse_features
from cheesecoin.util.addresses import Address
from cheesecoin.util.services import ErrorFirstOptions, integer_option, interface_option
from cheesecoin.wire.codec import ADDRESS_RE
from cheesecoin.wire.limits import API_PORT, MEMBER_PORT, MINER_PORT


def parse_host_port(name: str, value: str) -> Address:
    """HOST:PORT (or [V6]:PORT) -> (host, port); UsageError naming --name otherwise."""
    text = str(value).strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c.isspace() for c in host) or len(host) > 255:
        raise usage.UsageError(f"--{name} must be HOST:PORT, such as 127.0.0.1:24331, not {text!r}")
    try:
        port = int(port_text, 10)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise usage.UsageError(
            f"--{name} must be HOST:PORT with a port from 1 to 65535, not {text!r}"
        )
    return host, port


class Options(ErrorFirstOptions):
    """Command-line options of ``twistd cheesemember``."""

    command = "cheesemember"
    synopsis = "[--tracker HOST:PORT ...] [--port P] [--data-dir DIR] [--mine] [options]"
    longdesc = (
        "Run a CheeseCoin member: a full node that keeps the cheese stack in its data "
        "directory, talks to other members, serves the HTTP API and the miner port, "
        "and mines with --mine."
    )
    optFlags = [
        [
            "mine",
            None,
            "Mine cheeses with every core (or --mining-workers), paying the member's wallet.",
        ],
        ["no-mine", None, "Do not mine (the default)."],
        ["require-tls", None, "Keep no peer whose HELLO does not list tls (encrypted links only)."],
        [
            "reindex",
            None,
            "Re-validate every stored cheese (signatures too) into a fresh database before "
            "starting; the old one is kept as stack.sqlite3.bak.",
        ],
    ]
    optParameters = [
        [
            "port",
            "p",
            MEMBER_PORT,
            "TCP port for other members (1-65535; 0 picks a free one, which is logged).",
        ],
        ["interface", "i", "0.0.0.0", "IP address the member port listens on."],
        [
            "data-dir",
            "d",
            "cheesecoin-data",
            "Directory of the stack database, mempool and wallet.",
        ],
        [
            "network",
            "n",
            None,
            "Network file (a JSON Blue Cheese); default: the cheesecoin network.",
        ],
        [
            "miner-address",
            None,
            None,
            "Address (64 hex characters) paid for mined cheeses; default: the member's wallet.",
        ],
        ["mining-workers", None, 0, "Mining workers (one per core is best); 0 uses every core."],
        ["api-port", None, API_PORT, "TCP port of the HTTP API and explorer."],
        ["api-interface", None, "127.0.0.1", "IP address the HTTP API listens on."],
        ["miner-port", None, MINER_PORT, "TCP port for external miners (WORK/SUBMIT)."],
        ["miner-interface", None, "127.0.0.1", "IP address the miner port listens on."],
        ["peers", None, 8, "Number of peers to keep connected."],
        ["max-inbound", None, 32, "Most inbound member connections at once."],
        ["max-per-ip", None, 64, "Most member connections from one IP address."],
        [
            "host",
            None,
            None,
            "Host name or address to advertise to the tracker (default: as the tracker sees us).",
        ],
        [
            "features",
            None,
            "all",
            "The features to list in HELLO: all (every feature of sections 5.1 to 5.3, "
            "tls included), rev2 (headers, compact, mempool, as a revision-2 member), "
            "none (version-1 relay and sync), or names separated by commas.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["connect"] = []
        self["pins"] = {}  # (host, port) -> node_id of --connect HOST:PORT@NODE_ID
        self["trackers"] = []
        self["tracker"] = None  # the first --tracker (for tools); every one is in "trackers"

    def opt_connect(self, value: str) -> None:
        """Connect to the member at HOST:PORT and keep connected; with @NODE_ID
        (64 hex), the identity it must prove over TLS (repeatable)."""
        address, node_id = links.parse_peer(value, parse_host_port)
        self["connect"].append(address)
        self["pins"].update(links.pins_of([(address, node_id)]))

    def opt_tracker(self, value: str) -> None:
        """A tracker to register with, HOST:PORT (repeatable: each is asked for peers;
        without any: alone, or --connect peers)."""
        self["trackers"].append(parse_host_port("tracker", value))
        self["tracker"] = self["trackers"][0]

    opt_t = opt_tracker

    def postOptions(self) -> None:
        if self["mine"] and self["no-mine"]:
            raise usage.UsageError("--mine and --no-mine contradict each other")
        self["port"] = integer_option("port", self["port"], 0, 65535)
        self["api-port"] = integer_option("api-port", self["api-port"], 0, 65535)
        self["miner-port"] = integer_option("miner-port", self["miner-port"], 0, 65535)
        self["mining-workers"] = integer_option("mining-workers", self["mining-workers"], 0, 1024)
        self["peers"] = integer_option("peers", self["peers"], 0, 1000)
        self["max-inbound"] = integer_option("max-inbound", self["max-inbound"], 0, 100000)
        self["max-per-ip"] = integer_option("max-per-ip", self["max-per-ip"], 1, 100000)
        for name in ("interface", "api-interface", "miner-interface"):
            self[name] = interface_option(name, self[name])
        try:
            without_tls, tls = links.split_tls(self["features"])
            self["feature-names"] = parse_features(without_tls) + ((links.TLS,) if tls else ())
        except FeaturesError as e:
            raise usage.UsageError(str(e))
        links.check_tls_options(self)
        host = self["host"]
        if host is not None and (
            not host.strip() or len(host) > 255 or any(c.isspace() for c in host)
        ):
            raise usage.UsageError(f"--host must be a host name or address, not {host!r}")
        address = self["miner-address"]
        if address is not None and not ADDRESS_RE.match(address):
            raise usage.UsageError(
                "--miner-address must be an address: 64 lowercase hex characters"
            )
        data_dir = str(self["data-dir"]).strip()
        if not data_dir:
            raise usage.UsageError("--data-dir must not be empty")
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise usage.UsageError(f"--data-dir {data_dir} exists and is not a directory")
        self["data-dir"] = os.path.abspath(data_dir)
        try:
            self["network-object"] = load_network(self["network"])
        except NetworkError as e:
            raise usage.UsageError(str(e))


def makeService(config: Options, reactor: Any = reactor) -> MemberService:
    """The member: stack, node, peer manager, listeners, tracker link, timers,
    API, miner, all on ``reactor`` (twistd's; a test may pass its own)."""
    from cheesecoin.member.builder import MemberBuilder

    return MemberBuilder(config, reactor).build()
