"""The saved pins: ``pins.json`` in the member's data directory (docs/protocol.md section 5.3).

The node_id of every address this member dialled and reached over TLS, and
of those the tracker listed (``Pins.to_save``), written every minute and when
the member stops and loaded at the next start, so that a member keeps
refusing an impostor at an address it once reached. Replaced atomically
(write, fsync, rename); a missing, unreadable or damaged file is ignored with
a reason, never fatal (the pins are learned again).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from cheesecoin.storage.jsonfile import MAX_FILE_BYTES, MISSING, read_json, write_json

PINS_FILE = "pins.json"
FORMAT = 1


def pins_path(data_dir: str) -> str:
    return os.path.join(data_dir, PINS_FILE)


def load_pins(data_dir: str) -> Tuple[List[Any], Optional[str]]:
    """(entries, None), or ([], why) when there is no usable file (why None: no file at all)."""
    path = pins_path(data_dir)
    saved, why = read_json(path, MAX_FILE_BYTES)
    if saved is MISSING:
        return [], why
    if (
        not isinstance(saved, dict)
        or saved.get("format") != FORMAT
        or not isinstance(saved.get("pins"), list)
    ):
        return [], f"{path} is not a saved pin list of this version"
    return saved["pins"], None


def save_pins(data_dir: str, entries: List[dict]) -> None:
    """Write the entries atomically; raises OSError."""
    path = pins_path(data_dir)
    write_json(path, {"format": FORMAT, "pins": entries})
