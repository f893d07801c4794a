"""The worker side of ``cpuprocesspool``: what each worker process runs before its jobs.

No Twisted here: a worker imports only this and its jobs' modules, which the
fork server can import once for all of them (``cpuprocesspool.warm_up``).
"""

from __future__ import annotations

import os
import threading
import time

WORKER_NICENESS = 10  # below the reactor: it feeds the workers and answers peers meanwhile
WATCH_INTERVAL = 0.5  # seconds between a worker's checks that its member still runs


def start_worker(member: int) -> None:
    """A worker's initializer: a lower priority, and a thread that ends the
    worker once ``member`` (the process that made the pool) is gone. Without
    it a member killed with SIGKILL, or one whose shutdown did not reach its
    workers, left them waiting for work forever, and with them the fork
    server (each worker holds its "alive" pipe)."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # pragma: no cover - not allowed here: the same priority, still correct
        pass
    watch = threading.Thread(target=watch_member, args=(member,), daemon=True)
    watch.name = "cheesecoin-member-watch"
    watch.start()


def member_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[:1] in ([b"Z"], [b"X"])
    except FileNotFoundError:
        return True
    except OSError:  # pragma: no cover - no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False


def watch_member(pid: int) -> None:
    """End this worker once process ``pid`` is gone."""
    while not member_gone(pid):
        time.sleep(WATCH_INTERVAL)
    os._exit(0)
