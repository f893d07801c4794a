"""The ledger: balances and next nonces (docs/protocol.md s.3 rule 6 and s.4).

Pure Python, no Twisted. ``apply_cheese`` applies a cheese's transactions and
the miner's reward all-or-nothing; ``rollback_cheese`` undoes exactly that,
so a reorganisation walks back to the fork point without stored undo data.
Addresses with a zero balance and nonce are not kept, so equal ledgers
compare equal.
"""

from __future__ import annotations

from typing import Dict, Optional

from cheesecoin.core.errors import InvalidCheese, InvalidTx
from cheesecoin.core.tx import check_tx_format, tx_signature_fault


class Ledger:
    """Balances and next nonces of every address with coins or history."""

    def __init__(self) -> None:
        self.balances: Dict[str, int] = {}
        self.nonces: Dict[str, int] = {}

    def copy(self) -> "Ledger":
        other = Ledger()
        other.balances = dict(self.balances)
        other.nonces = dict(self.nonces)
        return other

    def balance(self, address: str) -> int:
        return self.balances.get(address, 0)

    def next_nonce(self, address: str) -> int:
        return self.nonces.get(address, 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ledger) and (self.balances, self.nonces) == (
            other.balances,
            other.nonces,
        )

    def _set(self, table: Dict[str, int], address: str, value: int) -> None:
        if value:
            table[address] = value
        else:
            table.pop(address, None)

    def check_tx(
        self,
        tx: dict,
        check_signature: bool = True,
        balances: Optional[Dict[str, int]] = None,
        nonces: Optional[Dict[str, int]] = None,
        check_format: bool = True,
    ) -> None:
        """Raise InvalidTx unless ``tx`` is valid against this ledger.

        ``balances``/``nonces`` overlay this ledger (pending changes).
        """
        if check_format:
            problem = check_tx_format(tx)
            if problem is not None:
                raise InvalidTx(*problem)
        fault = tx_signature_fault(tx) if check_signature else None
        if fault is not None:
            raise InvalidTx("tx-signature", f"the signature does not verify: {fault}")
        sender = tx["from"]
        nonce = (
            nonces[sender] if nonces is not None and sender in nonces else self.next_nonce(sender)
        )
        if tx["nonce"] != nonce:
            raise InvalidTx(
                "tx-nonce", f"nonce is {tx['nonce']}, the sender's next nonce is {nonce}"
            )
        have = (
            balances[sender]
            if balances is not None and sender in balances
            else self.balance(sender)
        )
        if have < tx["amount"] + tx["fee"]:
            raise InvalidTx(
                "tx-balance", f"the sender has {have}, needs {tx['amount'] + tx['fee']}"
            )

    def apply_cheese(
        self, info: dict, reward: int, check_signatures: bool = True, check_format: bool = True
    ) -> None:
        """Apply a member cheese's transactions and reward, or raise InvalidCheese.

        Nothing changes when a transaction is invalid. ``check_signatures``
        False skips Ed25519 checks already done (on arrival, or on reload);
        ``check_format`` False skips the shape checks the stack already made.
        """
        balances: Dict[str, int] = {}
        nonces: Dict[str, int] = {}
        fees = 0
        for i, tx in enumerate(info["transactions"]):
            try:
                self.check_tx(tx, check_signatures, balances, nonces, check_format)
            except InvalidTx as e:
                rule = e.rule
                if rule == "tx-balance" and tx["from"] in balances:
                    if self.balance(tx["from"]) >= tx["amount"] + tx["fee"]:
                        rule = "tx-double-spend"
                raise InvalidCheese(rule, f"transaction {i}: {e.message}")
            sender, to = tx["from"], tx["to"]
            balances[sender] = balances.get(sender, self.balance(sender)) - tx["amount"] - tx["fee"]
            balances[to] = balances.get(to, self.balance(to)) + tx["amount"]
            nonces[sender] = tx["nonce"] + 1
            fees += tx["fee"]
        miner = info["miner"]
        balances[miner] = balances.get(miner, self.balance(miner)) + reward + fees
        for address, value in balances.items():
            self._set(self.balances, address, value)
        for address, value in nonces.items():
            self._set(self.nonces, address, value)

    def rollback_cheese(self, info: dict, reward: int) -> None:
        """Undo ``apply_cheese`` of the same cheese (it must be the last applied)."""
        txs = info["transactions"]
        fees = sum(tx["fee"] for tx in txs)
        miner = info["miner"]
        self._set(self.balances, miner, self.balance(miner) - reward - fees)
        for tx in reversed(txs):
            sender, to = tx["from"], tx["to"]
            self._set(self.balances, to, self.balance(to) - tx["amount"])
            self._set(self.balances, sender, self.balance(sender) + tx["amount"] + tx["fee"])
            self._set(self.nonces, sender, tx["nonce"])
