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
``cheesecoin.mining.worker``. When the C extension ``_sha1search`` is built
(``setup.py`` builds it where a compiler exists), ``search_nonce`` runs it:
the same first nonce, found with the CPU's SHA instructions where it has
them (``backend()`` says which); this pure-Python search is its reference.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable, List, Optional, Tuple

NONCE_LIMIT = 2**64  # nonces are 0 to 2^64 - 1
_BLOCK = 10_000
_SHORT = [b"%d" % i for i in range(_BLOCK)]  # nonces below 10,000: no leading zeros
_TAILS = [b"%04d" % i for i in range(_BLOCK)]  # the last four digits of larger nonces


def target_for(bits: int) -> int:
    """Smells (as integers) below this meet ``bits`` of proof of work."""
    return 1 << (160 - bits)


# The native search (cheesecoin/core/_sha1search.c), when it was built; this
# module's pure-Python search is its reference and the fallback.
try:
    from cheesecoin.core import _sha1search as _native
except ImportError:  # no C compiler where this was installed
    _native = None  # type: ignore[assignment]  # None: no native search here
POW_ENV = "CHEESECOIN_POW"  # "python" or "portable" forces that search (tests, comparisons)
_BATCH_SECONDS = 0.02  # the native search returns to check should_stop about this often


def backend() -> str:
    """The nonce search in use: "sha-ni" or "portable-c" (native), or "python"."""
    forced = os.environ.get(POW_ENV, "").strip().lower()
    if _native is None or forced == "python":
        return "python"
    if forced == "portable":
        return "portable-c"
    return "sha-ni" if _native.backend() == "sha-ni" else "portable-c"


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
    kind = backend()
    if kind != "python":
        return _search_native(
            prefix, bits, start, end, should_stop, on_progress, kind == "portable-c"
        )
    return search_nonce_python(prefix, bits, start, end, should_stop, check_every, on_progress)


def _search_native(
    prefix: str,
    bits: int,
    start: int,
    end: int,
    should_stop: Optional[Callable[[], bool]],
    on_progress: Optional[Callable[[int], None]],
    portable: bool,
) -> Tuple[Optional[int], Optional[str]]:
    """``search_nonce`` in C, in batches of about _BATCH_SECONDS (the GIL is
    released meanwhile), so that ``should_stop`` is polled that often."""
    data = prefix.encode("ascii")
    nonce, end = max(0, start), min(end, NONCE_LIMIT)
    batch = 1 << 14
    while nonce < end:
        last = min(end, nonce + batch) - 1
        began = time.perf_counter()
        found = _native.search(data, bits, nonce, last, portable)
        took = time.perf_counter() - began
        if found is not None:
            if on_progress is not None:
                on_progress(found - nonce + 1)
            return found, hashlib.sha1(data + b"%d" % found).hexdigest()
        if on_progress is not None:
            on_progress(last - nonce + 1)
        nonce = last + 1
        if should_stop is not None and should_stop():
            return None, None
        batch = max(1 << 12, min(1 << 26, int(batch * _BATCH_SECONDS / max(took, 1e-6))))
    return None, None


def search_nonce_python(
    prefix: str,
    bits: int,
    start: int,
    end: int,
    should_stop: Optional[Callable[[], bool]] = None,
    check_every: int = 4096,
    on_progress: Optional[Callable[[int], None]] = None,
) -> Tuple[Optional[int], Optional[str]]:
    """The pure-Python search: the reference the native one must agree with."""
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
    return [
        (start + i * span, end if i == workers - 1 else start + (i + 1) * span)
        for i in range(workers)
    ]
