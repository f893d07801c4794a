"""How ``twistd cheesemember`` links to others (docs/protocol.md sections 2, 5.3 and 8).

``--connect HOST:PORT[@NODE_ID]`` (a peer to keep, with the identity it must
prove), ``--tracker`` (repeatable: every tracker is registered with and asked
for peers), ``--require-tls`` and the ``tls`` name of ``--features``; and, at
start, the member's identity key and its ``TlsPolicy`` with the pins of
``--connect``, of ``pins.json`` and of the trackers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from cheesecoin.util.addresses import Address

if TYPE_CHECKING:  # the taps import this module: these are for the type checker
    from cheesecoin.member.tap import Options
    from cheesecoin.p2p.manager import PeerManager
    from cheesecoin.p2p.tracker_link import TrackerLink

log = Logger(namespace="cheesecoin.member")

TLS = (
    "tls"  # the feature of section 5.3 (cheesecoin.p2p.tls.FEATURE, without importing OpenSSL here)
)
NODE_ID_RE = re.compile(r"[0-9a-f]{64}\Z")


def parse_peer(
    value: str, parse_host_port: Callable[[str, str], Address]
) -> Tuple[Address, Optional[str]]:
    """HOST:PORT or HOST:PORT@NODE_ID -> ((host, port), node_id or None); UsageError otherwise."""
    text = str(value).strip()
    address_text, at, node_id = text.partition("@")
    address = parse_host_port("connect", address_text)
    if not at:
        return address, None
    if not NODE_ID_RE.match(node_id):
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


def identity_node_id(
    config: Options, data_dir: str
) -> Tuple[Optional[Ed25519PrivateKey], Optional[str]]:
    """The identity key and node_id when the member lists tls (made at the first
    start); (None, None) otherwise. SystemExit with one line naming the file when damaged."""
    if TLS not in config.get("feature-names", ()):
        return None, None
    from cheesecoin.storage.identity import IdentityError, load_or_create_identity, node_id_of

    try:
        key = load_or_create_identity(data_dir)
    except IdentityError as e:
        raise SystemExit(f"cheesemember: {e}")
    return key, node_id_of(key)


def install_tls(
    config: Options, manager: PeerManager, key: Optional[Ed25519PrivateKey], data_dir: str
) -> None:
    """manager.tls: the TlsPolicy of this member, its pins from --connect and pins.json."""
    if key is None:
        return
    from cheesecoin.p2p.tls import TlsPolicy
    from cheesecoin.storage.pinfile import load_pins

    policy = TlsPolicy(key, require_tls=bool(config["require-tls"]))
    for address, node_id in config["pins"].items():
        policy.pins.fix(address, node_id)
    saved, why = load_pins(data_dir)
    if why is not None:
        log.warn("Ignoring the saved pins: {why}", why=why)
    elif saved:
        log.info("Loaded {n} pinned node ids", n=policy.pins.load_saved(saved))
    manager.tls = policy
    log.info(
        "Links are encrypted with peers that list tls (identity {node_id}){require}",
        node_id=policy.node_id,
        require="; peers that do not are refused" if policy.require_tls else "",
    )


def save_pins_of(manager: PeerManager, data_dir: str) -> None:
    """Write the learned pins (pins.json); OSError is logged, never fatal."""
    if manager.tls is None:
        return
    from cheesecoin.storage.pinfile import save_pins

    try:
        save_pins(data_dir, manager.tls.pins.to_save())
    except OSError as e:
        log.warn("Cannot save the pinned node ids: {why}", why=e)


def start_trackers(
    config: Options, manager: PeerManager, parent: MultiService, reactor: IReactorTime
) -> List[TrackerLink]:
    """A TrackerLink per --tracker (distinct ones), each a service of ``parent``."""
    from cheesecoin.p2p.tracker_link import TrackerLink

    links = []
    for host, port in dict.fromkeys(config["trackers"]):
        link = TrackerLink(manager, host, port, advertised_host=config["host"], reactor=reactor)
        link.service.setServiceParent(parent)
        links.append(link)
    return links


def pins_of(connects: List[Tuple[Address, Optional[str]]]) -> Dict[Address, str]:
    """address -> node_id of the pinned --connect peers (a later one of an address wins)."""
    return {address: node_id for address, node_id in connects if node_id is not None}
