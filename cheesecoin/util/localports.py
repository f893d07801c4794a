"""Free loopback ports for the demo, the tests and the benchmarks.

By default a port is drawn at random below the kernel's ephemeral range (an
ephemeral port, what binding port 0 gives, can be taken by any outgoing
connection, such as a member dialling a member, before the service it was
meant for listens on it). On a shared machine set ``CHEESECOIN_BASE_PORT``
to pin them: ports are then handed out upwards from that base (skipping
ones in use), so every run stays within a known range.
"""

from __future__ import annotations

import os
import random
import socket
from typing import Optional, Set, Tuple

BASE_PORT_ENV = "CHEESECOIN_BASE_PORT"


class PortError(RuntimeError):
    """No port can be handed out (or the base port is not a port)."""


def _ephemeral_range() -> Tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def base_port() -> Optional[int]:
    """``$CHEESECOIN_BASE_PORT`` as a port number, None when unset; PortError when not a port."""
    text = os.environ.get(BASE_PORT_ENV, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1024 <= int(text) <= 65000:
        raise PortError(
            f"${BASE_PORT_ENV} must be a port number from 1024 to 65000, not {text[:20]!r}"
        )
    return int(text)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out loopback ports, each once, free at the moment they are handed out."""

    def __init__(self) -> None:
        self.given: Set[int] = set()
        self._next: Optional[int] = None

    def pick(self) -> int:
        base = base_port()
        if base is not None:
            port = max(base, self._next or base)
            while port <= 65535:
                if port not in self.given and _bindable(port):
                    self.given.add(port)
                    self._next = port + 1
                    return port
                port += 1
            raise PortError(f"no free port from ${BASE_PORT_ENV}={base} up")
        lo, hi = _ephemeral_range()
        pool = range(20000, lo) if lo > 21000 else range(max(hi + 1, 1024), 65536)
        for _ in range(1000):
            port = random.choice(pool)
            if port not in self.given and _bindable(port):
                self.given.add(port)
                return port
        raise PortError("no free port below the ephemeral range")


_picker = PortPicker()


def free_port() -> int:
    """A free loopback port (see the module docstring); each handed out once per process."""
    return _picker.pick()
