"""The features a member lists in its HELLO (docs/protocol.md sections 5.1, 5.2, 8).

``--features`` of ``twistd cheesemember`` and ``cheesecoin simulate`` takes
``all`` (every feature of this revision that the member implements), ``rev2``
(the three of section 5.1, as a member of revision 2 lists), ``none``, or
names separated by commas.
"""

from __future__ import annotations

from typing import Tuple

HEADERS = "headers"
COMPACT = "compact"
MEMPOOL = "mempool"
INV = "inv"
COMPACT_MODES = "compact-modes"

REV2: Tuple[str, ...] = (HEADERS, COMPACT, MEMPOOL)  # section 5.1
ALL: Tuple[str, ...] = REV2 + (INV, COMPACT_MODES)  # and section 5.2
KNOWN = frozenset(ALL)
SETTINGS = {"all": ALL, "rev2": REV2, "none": ()}


class FeaturesError(ValueError):
    """A --features value we cannot use (the message is one line for people)."""


def parse_features(value: str) -> Tuple[str, ...]:
    """``all``, ``rev2``, ``none`` or comma-separated names, as the tuple to list."""
    if value in SETTINGS:
        return SETTINGS[value]
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in KNOWN]
    if not names or unknown:
        raise FeaturesError(
            f"--features must be all, rev2, none or names among {', '.join(ALL)}"
            + (f" (unknown: {', '.join(unknown)[:80]})" if unknown else "")
        )
    return names
