"""Exceptions shared by the pure core and the protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from cheesecoin.core.tree import AddResult

# Error codes of docs/protocol.md section 1.
ERROR_CODES = frozenset(
    {
        "bad-json",
        "bad-message",
        "unknown-type",
        "too-long",
        "handshake-required",
        "wrong-network",
        "not-found",
        "invalid-cheese",
        "invalid-tx",
        "stale",
        "busy",
    }
)


class ProtocolError(Exception):
    """A request that gets an ``ERROR`` reply with ``code``.

    ``points`` is what the ERROR costs the peer (its misbehaviour score); None
    means the cost of its code. The penalty travels on the error that causes
    it, down to the connection's ``on_error`` hook.
    """

    def __init__(self, code: str, message: str = "", points: Optional[int] = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        self.points = points


class BadMessage(ProtocolError):
    """A field is missing, of the wrong type or out of range."""

    def __init__(self, message: str) -> None:
        super().__init__("bad-message", message)


# Validity rules of docs/protocol.md sections 3 and 4, by name, with the rule
# number of section 3 they belong to.
RULE_NUMBERS = {
    "fields": 1,
    "info-keys": 1,
    "note": 1,
    "sequence_number": 2,
    "bits": 3,
    "timestamp": 4,
    "timestamp-future": 4,
    "smell": 5,
    "proof-of-work": 5,
    "miner-address": 6,
    "max-transactions": 6,
    "tx-fields": 6,
    "tx-self": 6,
    "tx-signature": 6,
    "tx-nonce": 6,
    "tx-balance": 6,
    "tx-double-spend": 6,
    "bad-parent": 6,
    "network": 1,
}


class InvalidCheese(Exception):
    """A cheese that breaks validity rule ``rule`` (a name of RULE_NUMBERS).

    ``result``: when ``CheeseStack.add_cheese`` raises it, what the same call
    did add (orphans it connected, a tip change) before the cheese failed."""

    result: Optional[AddResult] = None

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message

    @property
    def rule_number(self) -> int:
        return RULE_NUMBERS.get(self.rule, 1)

    @property
    def permanent(self) -> bool:
        """False when the same cheese may become valid later (future timestamp)."""
        return self.rule != "timestamp-future"


class InvalidTx(Exception):
    """A transaction that breaks a rule of section 4 (``rule`` is a tx-* name)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class StorageError(Exception):
    """The database cannot be used (corrupted, foreign, another network,
    unwritable); cheesecoin.storage raises it and its subclasses.

    ``result``: when a write of ``CheeseStack.add_cheese`` fails, what the same
    call added before it (it stays)."""

    result: Optional[AddResult] = None
