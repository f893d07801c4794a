"""A TCP relay between two real members that records what crosses it, and may
rewrite the HELLO lines (a man in the middle), for the tests of section 5.3."""

from __future__ import annotations

import json
import select
import socket
import threading
from typing import Callable, List, Optional

from procs import free_port

Rewrite = Callable[[dict], dict]


def strip_tls(hello: dict) -> dict:
    """A HELLO as a man in the middle would pass it on to force plain text."""
    out = dict(hello)
    if isinstance(out.get("features"), list):
        out["features"] = [f for f in out["features"] if f != "tls"]
    return out


class _Pipe:
    """One direction of one connection: its bytes, and the HELLO rewrite while lines are plain."""

    def __init__(self, rewrite: Optional[Rewrite]) -> None:
        self.data = bytearray()
        self.rewrite = rewrite
        self.pending = bytearray()
        self.rewriting = rewrite is not None

    def feed(self, chunk: bytes) -> bytes:
        self.data += chunk
        if not self.rewriting:
            return chunk
        self.pending += chunk
        out = bytearray()
        while self.rewriting:
            end = self.pending.find(b"\n")
            if end < 0:
                break
            line = bytes(self.pending[:end])
            del self.pending[: end + 1]
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and msg.get("type") == "HELLO":
                rewritten = self.rewrite(msg)  # type: ignore[misc]
                line = json.dumps(rewritten, separators=(",", ":")).encode()
                self.rewriting = False  # one HELLO per direction
            out += line + b"\n"
        if not self.rewriting:
            out += self.pending
            self.pending = bytearray()
        return bytes(out)


class Relay:
    """Listens on a free loopback port and relays each connection to ``target``."""

    def __init__(self, target_port: int, rewrite: Optional[Rewrite] = None) -> None:
        self.target_port = target_port
        self.rewrite = rewrite
        self.port = free_port()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self.conversations: List[List[_Pipe]] = []  # [to the target, back from it]
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            ready, _, _ = select.select([self.listener], [], [], 0.2)
            if not ready:
                continue
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                continue
            pipes = [_Pipe(self.rewrite), _Pipe(self.rewrite)]
            self.conversations.append(pipes)
            threading.Thread(target=self._relay, args=(client, server, pipes), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket, pipes: List[_Pipe]) -> None:
        ends = {client: (server, pipes[0]), server: (client, pipes[1])}
        try:
            while not self.stopped:
                ready, _, _ = select.select(list(ends), [], [], 0.2)
                for sock in ready:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    other, pipe = ends[sock]
                    out = pipe.feed(chunk)
                    if out:
                        other.sendall(out)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()
        self.thread.join(5)
