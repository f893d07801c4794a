"""The saved address book: ``peers.json`` in the member's data directory.

The members a member completed a handshake with (``AddressBook.to_save``)
are written here every minute and when it stops, and dialled first when it
starts again, so that a member that ran before finds the network without
the tracker. The file is replaced atomically (write, fsync, rename); a
missing, unreadable or foreign file is ignored with a reason, never fatal.
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Optional, Tuple

PEERS_FILE = "peers.json"
FORMAT = 1
MAX_FILE_BYTES = 1024 * 1024


def peers_path(data_dir: str) -> str:
    return os.path.join(data_dir, PEERS_FILE)


def load_peers(data_dir: str) -> Tuple[List[Any], Optional[str]]:
    """(entries, None), or ([], why) when there is no usable file (None as why when there is none at all)."""
    path = peers_path(data_dir)
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
    except (UnicodeDecodeError, ValueError):
        return [], f"{path} is not JSON"
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("peers"), list):
        return [], f"{path} is not a saved address book of this version"
    return saved["peers"], None


def save_peers(data_dir: str, entries: List[dict]) -> None:
    """Write the entries atomically; raises OSError."""
    path = peers_path(data_dir)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "peers": entries}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
