"""Proof-of-work nonce search with the SHA1 midstate of the preimage prefix.

Pure Python, no Twisted. ``search_nonce`` is the inner loop of every miner.
A nonce ``n >= 10000`` is written as ``str(n // 10000)`` followed by four
zero-padded digits, so the state after the prefix and the high digits is
hashed once per 10,000 nonces and each hash only copies it and feeds one of
10,000 precomputed 4-byte tails; the digest is compared with the target as
bytes (one ``memcmp``). A ``should_stop`` callable is polled every
``check_every`` nonces so that a thread or process can be stopped
cooperatively.

The search worker process that runs it on each core is
``cheesecoin.mining.worker``.
"""

from __future__ import annotations

import hashlib
from typing import Callable, List, Optional, Tuple

NONCE_LIMIT = 2**64  # nonces are 0 to 2^64 - 1
_BLOCK = 10_000
_SHORT = [b"%d" % i for i in range(_BLOCK)]  # nonces below 10,000: no leading zeros
_TAILS = [b"%04d" % i for i in range(_BLOCK)]  # the last four digits of larger nonces


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
    # Equal-length big-endian byte strings compare like the integers they encode.
    target = target_for(bits).to_bytes(20, "big")
    base = hashlib.sha1(prefix.encode("ascii"))
    check_every = max(1, check_every)
    nonce = max(0, start)
    end = min(end, NONCE_LIMIT)
    while nonce < end:
        high, low = divmod(nonce, _BLOCK)
        if high:
            mid = base.copy()
            mid.update(b"%d" % high)
            tails = _TAILS
        else:
            mid = base
            tails = _SHORT
        stop = min(_BLOCK, low + check_every, low + end - nonce)
        copy = mid.copy
        for tail in tails[low:stop]:
            h = copy()
            h.update(tail)
            if h.digest() < target:
                found = high * _BLOCK + int(tail)
                if on_progress is not None:
                    on_progress(found - nonce + 1)
                return found, h.hexdigest()
        if on_progress is not None:
            on_progress(stop - low)
        nonce += stop - low
        if should_stop is not None and should_stop():
            return None, None
    return None, None


def split_range(workers: int, start: int = 0, end: int = NONCE_LIMIT) -> List[Tuple[int, int]]:
    """[start, end) cut into ``workers`` disjoint, contiguous ranges."""
    workers = max(1, workers)
    span = (end - start) // workers
    return [(start + i * span, end if i == workers - 1 else start + (i + 1) * span) for i in range(workers)]
