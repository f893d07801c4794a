"""Proof-of-work nonce search with the SHA1 midstate of the preimage prefix.

Pure Python, no Twisted. ``search_nonce`` is the inner loop of every miner:
it hashes the prefix once, then copies that state for each nonce. A
``should_stop`` callable is polled every ``check_every`` nonces so that a
thread can be stopped cooperatively.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional, Tuple


def target_for(bits: int) -> int:
    """Smells (as integers) below this meet ``bits`` of proof of work."""
    return 1 << (160 - bits)


def search_nonce(
    prefix: str,
    bits: int,
    start: int,
    end: int,
    should_stop: Optional[Callable[[], bool]] = None,
    check_every: int = 4096,
    on_progress: Optional[Callable[[int], None]] = None,
) -> Tuple[Optional[int], Optional[str]]:
    """Search nonces in [start, end) for one whose smell meets ``bits``.

    Returns (nonce, smell), or (None, None) when the range is exhausted or
    ``should_stop()`` said so. ``on_progress(n)`` is told of each n hashes done.
    """
    base = hashlib.sha1(prefix.encode("ascii"))
    target = target_for(bits)
    from_bytes = int.from_bytes
    nonce = start
    while nonce < end:
        stop = min(end, nonce + check_every)
        for n in range(nonce, stop):
            h = base.copy()
            h.update(b"%d" % n)
            digest = h.digest()
            if from_bytes(digest, "big") < target:
                if on_progress is not None:
                    on_progress(n - nonce + 1)
                return n, digest.hex()
        if on_progress is not None:
            on_progress(stop - nonce)
        nonce = stop
        if should_stop is not None and should_stop():
            return None, None
    return None, None
