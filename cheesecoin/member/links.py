"""How ``twistd cheesemember`` links to others (docs/protocol.md sections 2, 5.3 and 8).

At start, from the options of ``--connect HOST:PORT[@NODE_ID]``, ``--tracker``
(repeatable: every tracker is registered with and asked for peers),
``--require-tls`` and the ``tls`` name of ``--features`` (parsed by
``cheesecoin.member.options``): the member's identity key, its ``TlsPolicy``
with the pins of ``--connect`` and of ``pins.json``, and a ``TrackerLink``
per tracker; at stop, the learned pins saved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from cheesecoin.member.options import TLS, Options

if TYPE_CHECKING:
    from cheesecoin.p2p.manager import PeerManager
    from cheesecoin.p2p.tracker_link import TrackerLink

log = Logger(namespace="cheesecoin.member")


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
