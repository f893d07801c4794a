"""Fields of member messages that more than one part reads, checked once here.

Each ``get_*`` takes a decoded message and returns the field's value, or
raises ``BadMessage`` (an ERROR ``bad-message`` to the peer); the ``wire``
codec checks the fields every part of the system shares (ints, smells,
ports), these are the peer layer's own: a HELLO's ``work``, ``node_id`` and
``features``, a ``locator``, lists of txids and of smells.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, FrozenSet, List

from cheesecoin.core.formats import NODE_ID_RE
from cheesecoin.p2p.features import KNOWN
from cheesecoin.wire import codec as wire

MAX_LOCATOR = 1000  # smells in a locator we accept
MAX_FEATURES = 32  # names in a HELLO's features (section 5.1)
MAX_FEATURE_LENGTH = 32
_WORK_RE = re.compile(r"[0-9]{1,80}\Z")
# txids joined by commas (get_txids), each as SMELL_RE
_TXIDS_RE = re.compile(r"[0-9a-f]{40}(?:,[0-9a-f]{40})*")


def get_work(msg: dict, key: str = "work") -> int:
    """A total work: a decimal string of at most 80 digits."""
    value = wire.get_str(msg, key, 80)
    if not _WORK_RE.match(value):
        raise wire.BadMessage(f"field '{key}' must be a decimal string")
    return int(value)


def get_node_id(msg: dict) -> str:
    """A HELLO's ``node_id``: 1 to 64 lowercase hex characters."""
    node_id = wire.get_str(msg, "node_id", 64)
    if not NODE_ID_RE.match(node_id):
        raise wire.BadMessage("field 'node_id' must be 1 to 64 lowercase hex characters")
    return node_id


def get_locator(msg: dict) -> List[str]:
    """A ``locator``: at most MAX_LOCATOR smells."""
    locator = msg.get("locator")
    if not isinstance(locator, list) or len(locator) > MAX_LOCATOR:
        raise wire.BadMessage(f"field 'locator' must be a list of at most {MAX_LOCATOR} smells")
    if not all(isinstance(s, str) and wire.SMELL_RE.match(s) for s in locator):
        raise wire.BadMessage("field 'locator' must hold smells (40 lowercase hex characters)")
    return locator


def get_smells(msg: dict, most: int) -> List[str]:
    """A GET_CHEESES' ``smells`` (section 5.1): 1 to ``most`` smells."""
    smells = msg.get("smells")
    if (
        not isinstance(smells, list)
        or not 1 <= len(smells) <= most
        or not all(isinstance(x, str) and wire.SMELL_RE.match(x) for x in smells)
    ):
        raise wire.BadMessage(f"field 'smells' must be a list of 1 to {most} smells")
    return smells


def get_features(msg: dict) -> FrozenSet[str]:
    """The ``features`` of a HELLO (section 5.1): none when absent; unknown names
    are kept and ignored."""
    if "features" not in msg:
        return frozenset()
    value = msg["features"]
    if (
        not isinstance(value, list)
        or len(value) > MAX_FEATURES
        or not all(isinstance(f, str) and len(f) <= MAX_FEATURE_LENGTH for f in value)
    ):
        raise wire.BadMessage(
            f"field 'features' must be a list of at most {MAX_FEATURES} strings "
            f"of at most {MAX_FEATURE_LENGTH} characters"
        )
    features = frozenset(value)
    if features <= KNOWN:  # one shared set per combination (at most 2**5 of them)
        return _KNOWN_SETS.setdefault(features, features)
    return features


# Sets of known feature names, each held once: every connection's ``peer_features``
# refers to one of these instead of its own copy (700 bytes each; a simulated
# network holds hundreds of thousands of connections). Names we do not know are
# not kept here, so a peer cannot grow it.
_KNOWN_SETS: Dict[FrozenSet[str], FrozenSet[str]] = {}


def get_txids(msg: dict, key: str, most: int, least: int = 1) -> List[str]:
    """A list of ``least`` to ``most`` txids (40 lowercase hex characters), else BadMessage."""
    value = msg.get(key)
    if not isinstance(value, list) or not least <= len(value) <= most:
        raise wire.BadMessage(f"field '{key}' must be a list of {least} to {most} txids")
    # One match over the joined list (an INV's 1,000 txids cost one call, not 1,000):
    # strings only (join refuses others), and 41 characters a txid less one with
    # exactly that many commas, so each is 40 characters of SMELL_RE's hex.
    try:
        joined = ",".join(value)
    except TypeError:
        joined = None
    if joined is None or (
        value and (len(joined) != 41 * len(value) - 1 or not _TXIDS_RE.fullmatch(joined))
    ):
        raise wire.BadMessage(f"field '{key}' must hold txids (40 lowercase hex characters)")
    return value


def id_suffix(msg_id: Any) -> str:
    """The ``,"id":...`` that ends a reply line built by hand (none without an id)."""
    if msg_id is None:
        return ""
    if type(msg_id) is int:  # most ids (ours are): without the encoder
        return ',"id":%d' % msg_id
    return ',"id":' + json.dumps(msg_id, ensure_ascii=False)
