"""The nonce-search worker process: ``python -m cheesecoin.mining.worker``.

The built-in miner and ``cheesecoin mine`` start one per core and drive it
with JSON lines on its stdin; it searches with ``cheesecoin.core.pow`` and
exits when its stdin closes (so it dies with its parent, even a killed one).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import IO, Callable, List, NoReturn, Optional, Tuple

from cheesecoin.core.pow import search_nonce

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
                order["prefix"],
                order["bits"],
                order["start"],
                order["end"],
                inbox.changed.is_set,
                4096,
                report,
            )
            report.flush()
            if nonce is not None:
                write({"job": order.get("job"), "nonce": nonce, "smell": smell})
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    except (KeyError, TypeError, ValueError) as e:  # a malformed order: a bug in the parent
        sys.stderr.write(f"cheesecoin.mining.worker: bad order: {e}\n")
        return 1


def worker_command() -> List[str]:
    """The argv that starts a worker process with this interpreter."""
    return [sys.executable, "-m", "cheesecoin.mining.worker"]


def _run_worker() -> NoReturn:  # pragma: no cover - runs in the child process
    sys.exit(worker_main())


if __name__ == "__main__":  # pragma: no cover
    _run_worker()
