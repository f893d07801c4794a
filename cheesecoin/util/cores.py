"""How many cores this process may use: the one count every part uses."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity): mining workers,
    signature checks while syncing and in ``cheesecoin verify``, the CPU pool."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1
