"""What a peer's misbehaviour costs it, and how our requests to a peer fail.

Its own module so that every part of the peer layer (the connection, the
sync, compact relay) can name them without importing the connection.
"""

from __future__ import annotations

from cheesecoin.core.errors import ProtocolError

BAN_SCORE = 100  # misbehaviour points that get a peer banned (loopback: closed)

# Misbehaviour points per ERROR code we had to send (see MemberProtocol.on_error).
ERROR_POINTS = {
    "bad-json": 10,
    "bad-message": 10,
    "unknown-type": 5,
    "too-long": 50,
    "handshake-required": 10,
    "invalid-cheese": 25,
    "invalid-tx": 10,
}


class RequestTimeout(Exception):
    """A request to a peer got no reply in time."""


class RemoteError(Exception):
    """A peer answered a request with ERROR."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PeerError(ProtocolError):
    """A ProtocolError that must say what it costs the peer: ``points`` rather
    than its code's ERROR_POINTS (e.g. a stale transaction costs 1 point, an
    invalid cheese that may not be its fault 0). Raised anywhere a message is
    handled, or passed to ``refuse``, it reaches ``on_error`` with its points."""

    def __init__(self, code: str, message: str, points: int) -> None:
        super().__init__(code, message, points)
