"""The saved address book: ``peers.json`` in the member's data directory.

The address book (``AddressBook.to_save``: the anchors, i.e. the outbound
peers of this run, then the tried addresses, then the new ones with their
source) is written here every minute and when the member stops, and loaded
when it starts again: the anchors are dialled first, so that a member that
ran before finds its old peers without the tracker. Format 2; a format-1
file (a list of addresses that "worked", from before the tried/new split)
still loads, its entries as new ones. The file is replaced atomically
(write, fsync, rename); a missing, unreadable, damaged or foreign file is
ignored with a reason (the member starts with an empty book), never fatal.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from cheesecoin.storage.jsonfile import MAX_FILE_BYTES, MISSING, read_json, write_json

PEERS_FILE = "peers.json"
FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: before the tried/new split (its entries load as new)


def peers_path(data_dir: str) -> str:
    return os.path.join(data_dir, PEERS_FILE)


def load_peers(data_dir: str) -> Tuple[List[Any], Optional[str]]:
    """(entries, None), or ([], why) when there is no usable file (None as why
    when there is none at all)."""
    path = peers_path(data_dir)
    saved, why = read_json(path, MAX_FILE_BYTES)
    if saved is MISSING:
        return [], why
    version = saved.get("format") if isinstance(saved, dict) else None
    readable = type(version) is int and version in READABLE_FORMATS
    if not readable or not isinstance(saved.get("peers"), list):
        return [], f"{path} is not a saved address book of this version"
    return saved["peers"], None


def save_peers(data_dir: str, entries: List[dict]) -> None:
    """Write the entries atomically; raises OSError."""
    path = peers_path(data_dir)
    write_json(path, {"format": FORMAT, "peers": entries})
