"""``twistd cheesemember``'s command line (docs/protocol.md sections 5 and 8).

    twistd -n cheesemember [--tracker HOST:PORT ...] [--port 24331] [--data-dir DIR]
                           [--network FILE] [--mine | --no-mine] [--miner-address A]
                           [--api-port 24332] [--miner-port 24333]
                           [--connect HOST:PORT[@NODE_ID] ...] [--require-tls] [--features F]

``Options`` parses and checks it, with ``--connect HOST:PORT[@NODE_ID]`` (a
peer to keep, with the identity it must prove), ``--tracker`` (repeatable),
``--require-tls`` and the ``tls`` name of ``--features`` (section 5.3); what
the member does with them at start is ``cheesecoin.member.links`` and
``cheesecoin.member.builder``.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from twisted.python import usage

from cheesecoin.core.cheese import NetworkError, load_network
from cheesecoin.p2p.features import FeaturesError, parse_features
from cheesecoin.util.addresses import Address
from cheesecoin.util.services import ErrorFirstOptions, integer_option, interface_option
from cheesecoin.wire.codec import ADDRESS_RE, IDENTITY_RE
from cheesecoin.wire.limits import API_PORT, MEMBER_PORT, MINER_PORT

# the feature of section 5.3 (cheesecoin.p2p.tls.FEATURE, without importing OpenSSL here)
TLS = "tls"


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


def parse_peer(value: str) -> Tuple[Address, Optional[str]]:
    """HOST:PORT or HOST:PORT@NODE_ID -> ((host, port), node_id or None); UsageError otherwise."""
    text = str(value).strip()
    address_text, at, node_id = text.partition("@")
    address = parse_host_port("connect", address_text)
    if not at:
        return address, None
    if not IDENTITY_RE.match(node_id):
        raise usage.UsageError(
            "--connect HOST:PORT@NODE_ID needs a node id of 64 lowercase hex characters, "
            f"not {node_id[:80]!r}"
        )
    return address, node_id


def split_tls(value: str) -> Tuple[str, bool]:
    """--features: (the value without the name tls, whether tls is listed).
    ``all`` lists it (every feature of this revision); ``rev2`` and ``none`` do not."""
    if value == "all":
        return value, True
    names = [n.strip() for n in str(value).split(",")]
    if TLS not in names:
        return value, False
    rest = [n for n in names if n and n != TLS]
    return (",".join(rest) if rest else "none"), True


def check_tls_options(options: Options) -> None:
    """--require-tls and pinned peers need tls among the features."""
    if TLS in options["feature-names"]:
        return
    if options["require-tls"]:
        raise usage.UsageError("--require-tls needs tls among --features (all lists it)")
    if options["pins"]:
        raise usage.UsageError(
            "--connect HOST:PORT@NODE_ID needs tls among --features (all lists it)"
        )


def pins_of(connects: List[Tuple[Address, Optional[str]]]) -> Dict[Address, str]:
    """address -> node_id of the pinned --connect peers (a later one of an address wins)."""
    return {address: node_id for address, node_id in connects if node_id is not None}


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
        address, node_id = parse_peer(value)
        self["connect"].append(address)
        self["pins"].update(pins_of([(address, node_id)]))

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
            without_tls, tls = split_tls(self["features"])
            self["feature-names"] = parse_features(without_tls) + ((TLS,) if tls else ())
        except FeaturesError as e:
            raise usage.UsageError(str(e))
        check_tls_options(self)
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
