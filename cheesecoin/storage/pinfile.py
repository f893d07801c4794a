"""The saved pins: ``pins.json`` in the member's data directory (docs/protocol.md section 5.3).

The node_id of every address this member dialled and reached over TLS, and
of those the tracker listed (``Pins.to_save``), written every minute and when
the member stops and loaded at the next start, so that a member keeps
refusing an impostor at an address it once reached. Replaced atomically
(write, fsync, rename); a missing, unreadable or damaged file is ignored with
a reason, never fatal (the pins are learned again).
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Optional, Tuple

PINS_FILE = "pins.json"
FORMAT = 1
MAX_FILE_BYTES = 1024 * 1024


def pins_path(data_dir: str) -> str:
    return os.path.join(data_dir, PINS_FILE)


def load_pins(data_dir: str) -> Tuple[List[Any], Optional[str]]:
    """(entries, None), or ([], why) when there is no usable file (why None: no file at all)."""
    path = pins_path(data_dir)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return [], None
    except OSError as e:
        return [], f"cannot read {path}: {e.strerror}"
    if len(data) > MAX_FILE_BYTES:
        return [], f"{path} is larger than {MAX_FILE_BYTES} bytes"
    try:
        saved = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [], f"{path} is not JSON"
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
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "pins": entries}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
