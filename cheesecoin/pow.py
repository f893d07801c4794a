"""Proof-of-work nonce search with the SHA1 midstate of the preimage prefix.

Pure Python, no Twisted. ``search_nonce`` is the inner loop of every miner.
A nonce ``n >= 10000`` is written as ``str(n // 10000)`` followed by four
zero-padded digits, so the state after the prefix and the high digits is
hashed once per 10,000 nonces and each hash only copies it and feeds one of
10,000 precomputed 4-byte tails; the digest is compared with the target as
bytes (one ``memcmp``). A ``should_stop`` callable is polled every
``check_every`` nonces so that a thread or process can be stopped
cooperatively.

``python -m cheesecoin.pow`` runs a search worker process (see
``worker_main``): the built-in miner and ``cheesecoin mine`` start one per
core and drive it with JSON lines on its stdin.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time
from typing import IO, Any, Callable, List, Optional, Tuple

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


# -- the worker process ------------------------------------------------------------
#
# Parent -> worker, one JSON object a line:
#   {"job": K, "prefix": TEXT, "bits": B, "start": S, "end": E}   search this (drop any other)
#   {"job": null}                                                    stop searching, wait
#   end of stdin                                                     exit
# Worker -> parent:
#   {"job": K, "nonce": N, "smell": S}   found (then waits for the next job)
#   {"hashes": N}                        N more hashes done (about every REPORT_EVERY s)


REPORT_EVERY = 0.25


def pipe_line(msg: dict) -> bytes:
    """One message of the worker pipe, either way, as its line."""
    return json.dumps(msg, separators=(",", ":")).encode("ascii") + b"\n"


class _Inbox:
    """The latest order from the parent, and an event set whenever one arrives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.order: Optional[dict] = None
        self.closed = False

    def read_from(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                order = json.loads(line)
            except ValueError:
                continue
            if isinstance(order, dict):
                with self.lock:
                    self.order = order
                    self.changed.set()
        with self.lock:
            self.closed = True
            self.changed.set()

    def take(self) -> Tuple[Optional[dict], bool]:
        """Wait for an order: (order, closed)."""
        self.changed.wait()
        with self.lock:
            self.changed.clear()
            return self.order, self.closed


class _Reporter:
    """Counts hashes and writes ``{"hashes": N}`` at most every REPORT_EVERY seconds."""

    def __init__(self, write: Callable[[dict], None]) -> None:
        self.write = write
        self.pending = 0
        self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        self.pending += count
        now = time.monotonic()
        if now - self.last >= REPORT_EVERY:
            self.flush(now)

    def flush(self, now: Optional[float] = None) -> None:
        if self.pending:
            self.write({"hashes": self.pending})
            self.pending = 0
        self.last = time.monotonic() if now is None else now


def worker_main(stdin: Optional[IO[bytes]] = None, stdout: Optional[IO[bytes]] = None) -> int:
    """Search jobs read from ``stdin`` until it closes (the parent went away)."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout.buffer
    # Ctrl-C reaches the whole process group: the parent decides when we stop.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (tests)
        pass

    def write(msg: dict) -> None:
        out.write(pipe_line(msg))
        out.flush()

    inbox = _Inbox()
    threading.Thread(target=inbox.read_from, args=(stdin,), name="pow-stdin", daemon=True).start()
    report = _Reporter(write)
    try:
        while True:
            order, closed = inbox.take()
            if closed:
                return 0
            if not order or not isinstance(order.get("prefix"), str):
                continue
            nonce, smell = search_nonce(
                order["prefix"], order["bits"], order["start"], order["end"], inbox.changed.is_set, 4096, report
            )
            report.flush()
            if nonce is not None:
                write({"job": order.get("job"), "nonce": nonce, "smell": smell})
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    except (KeyError, TypeError, ValueError) as e:  # a malformed order: a bug in the parent
        sys.stderr.write(f"cheesecoin.pow worker: bad order: {e}\n")
        return 1


def worker_command() -> List[str]:
    """The argv that starts a worker process with this interpreter."""
    return [sys.executable, "-m", "cheesecoin.pow"]


def _run_worker() -> Any:  # pragma: no cover - runs in the child process
    sys.exit(worker_main())


if __name__ == "__main__":  # pragma: no cover
    _run_worker()
