"""The workers of a parallel run and what they exchange at the end of each window.

Worker 0 (the process that was asked for the run) is the hub; the others
are forked from it and each holds one ``multiprocessing`` pipe to it. At the
end of each window every worker hands the hub what it ships to each worker
and a small control record; the hub hands each worker the items addressed
to it (in the order of the workers that made them, each worker's in the
order it made them: the same every run) and every worker's control record.
A spoke writes, then reads; the hub reads from every spoke, then writes: no
two processes ever wait to write to each other.

A worker that fails sends its traceback in place of its window; the hub
raises ``WorkerFailed`` with it, and the spokes of a hub that has gone read
the end of their pipe and stop.
"""

from __future__ import annotations

import multiprocessing
import pickle
import traceback
from typing import Any, Callable, List, Sequence, Tuple

from cheesecoin.sim.crosslink import Item

# What a message is (a worker out of step with the others is stopped, not misread)
_WINDOW, _GATHER, _SHARE, _ERROR = "window", "gather", "share", "error"
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class WorkerFailed(RuntimeError):
    """A worker of a parallel run failed or went away (the message says which and why)."""


class Channel:
    """One worker's side of the exchange (``conns``: the hub's pipe to each spoke in
    worker order, or a spoke's one pipe to the hub)."""

    def __init__(self, worker: int, workers: int, conns: Sequence[Any]) -> None:
        self.worker = worker
        self.workers = workers
        self.conns = list(conns)

    def exchange(self, outboxes: List[List[Item]], control: Any) -> Tuple[List[Item], List[Any]]:
        """Ship ``outboxes`` (one list per worker) and ``control``; returns the items
        addressed to this worker and every worker's control record."""
        if self.worker:
            self._send(self.conns[0], 0, (_WINDOW, outboxes, control))
            inbox, controls = self._recv(self.conns[0], 0, _WINDOW)
            return inbox, controls
        windows = [(outboxes, control)]
        for k, conn in enumerate(self.conns, start=1):
            windows.append(self._recv(conn, k, _WINDOW))
        controls = [c for _, c in windows]
        for k, conn in enumerate(self.conns, start=1):
            inbox = [i for boxes, _ in windows for i in boxes[k]]
            self._send(conn, k, (_WINDOW, inbox, controls))
        return [i for boxes, _ in windows for i in boxes[0]], controls

    def gather(self, payload: Any) -> List[Any]:
        """The end of the run: every worker's ``payload``, in worker order (at the hub;
        a spoke gets an empty list)."""
        if self.worker:
            self._send(self.conns[0], 0, (_GATHER, payload))
            return []
        return [payload] + [self._recv(conn, k, _GATHER)[0] for k, conn in enumerate(self.conns, 1)]

    def share(self, payload: Any) -> Any:
        """The hub's ``payload``, handed to every worker (a spoke's argument is ignored)."""
        if self.worker:
            return self._recv(self.conns[0], 0, _SHARE)[0]
        for k, conn in enumerate(self.conns, start=1):
            self._send(conn, k, (_SHARE, payload))
        return payload

    def failed(self, text: str) -> None:
        """Tell the hub (from a spoke) that this worker has failed."""
        try:
            self._send(self.conns[0], 0, (_ERROR, text))
        except WorkerFailed:
            pass  # the hub has gone too

    @staticmethod
    def _send(conn: Any, k: int, message: Any) -> None:
        try:
            conn.send_bytes(pickle.dumps(message, _PROTOCOL))
        except OSError:  # a broken pipe: the other end has gone
            raise WorkerFailed(f"worker {k} of the parallel run went away")

    @staticmethod
    def _recv(conn: Any, k: int, kind: str) -> Any:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            raise WorkerFailed(f"worker {k} of the parallel run went away")
        if message[0] == _ERROR:
            raise WorkerFailed(f"worker {k} of the parallel run failed:\n{message[1]}")
        if message[0] != kind:
            raise WorkerFailed(f"worker {k} of the parallel run is out of step ({message[0]})")
        return message[1:]

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


def run_workers(workers: int, make_and_run: Callable[[int, Channel], Any]) -> Any:
    """Fork ``workers - 1`` spokes, each running ``make_and_run(k, channel)``, run the
    hub's share here and return what the hub's call returns."""
    ctx = multiprocessing.get_context("fork")
    hub_ends, processes = [], []
    for k in range(1, workers):
        hub_end, spoke_end = ctx.Pipe(duplex=True)
        hub_ends.append(hub_end)
        process = ctx.Process(
            target=_spoke,
            args=(k, workers, spoke_end, list(hub_ends), make_and_run),
            daemon=True,
        )
        process.start()
        spoke_end.close()
        processes.append(process)
    channel = Channel(0, workers, hub_ends)
    try:
        return make_and_run(0, channel)
    finally:
        channel.close()  # a spoke still waiting reads the end of its pipe and stops
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()


def _spoke(
    k: int,
    workers: int,
    conn: Any,
    hub_ends: List[Any],
    make_and_run: Callable[[int, Channel], Any],
) -> None:
    # The fork copied the hub's ends of the pipes made so far: closed here, so that
    # a hub that goes away leaves its spokes reading the end of their pipes.
    for end in hub_ends:
        end.close()
    channel = Channel(k, workers, [conn])
    try:
        make_and_run(k, channel)
    except WorkerFailed:
        pass  # the hub has gone: it says why
    except BaseException:  # noqa: BLE001 - whatever it was, the hub reports it
        channel.failed(traceback.format_exc())
    finally:
        conn.close()
