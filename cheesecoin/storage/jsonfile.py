"""Small JSON files a member keeps beside its database (``peers.json``, ``pins.json``).

Read whole but bounded, and written atomically (write to ``.tmp``, fsync,
rename), so a crash leaves the old file or the new one, never half of one.
A missing, unreadable, oversized or damaged file is a reason, never an error:
what these files hold is learned again.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Tuple

MISSING = object()  # read_json's value when there is no file at all
MAX_FILE_BYTES = 1024 * 1024  # the most a peers.json or pins.json is read of


def read_json(path: str, max_bytes: int) -> Tuple[Any, Optional[str]]:
    """(value, None); (MISSING, None) when there is no file; (MISSING, why) when it
    cannot be used (unreadable, larger than ``max_bytes``, not JSON)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return MISSING, None
    except OSError as e:
        return MISSING, f"cannot read {path}: {e.strerror}"
    if len(data) > max_bytes:
        return MISSING, f"{path} is larger than {max_bytes} bytes"
    try:
        return json.loads(data.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return MISSING, f"{path} is not JSON"


def write_json(path: str, value: Any) -> None:
    """Replace ``path`` with ``value`` atomically; raises OSError."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
