"""``StoreWatch``: the member stops when its database file is gone or replaced."""

from __future__ import annotations

import os
from typing import Callable


class StoreWatch:
    """Checks that the database file is still the one the member opened: a
    data directory deleted, moved or replaced while the member runs would
    otherwise go unnoticed (cheeses mined into deleted files, a new wallet at
    the next start). ``on_gone(reason)`` is called once when it is not."""

    def __init__(self, path: str, on_gone: Callable[[str], None]) -> None:
        self.path = path
        self.on_gone = on_gone
        st = os.stat(path)
        self.identity = (st.st_dev, st.st_ino)
        self.gone = False

    def check(self) -> None:
        if self.gone:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            why = "is gone (its data directory was deleted or moved while the member ran)"
        except OSError as e:
            why = f"cannot be looked at ({e.strerror})"
        else:
            if (st.st_dev, st.st_ino) == self.identity:
                return
            why = "was replaced by another file while the member ran"
        self.gone = True
        self.on_gone(f"The database {self.path} {why}: stopping")
