"""The mempool: valid transactions waiting for a cheese (docs/protocol.md s.4, s.5).

Pure Python, no Twisted. Transactions are checked against the best stack's
ledger plus the mempool: each sender's transactions form a chain of
consecutive nonces that its balance covers. A transaction with the same
sender and nonce as one already here replaces it only with a higher fee.
When full, the lowest-fee transaction at the end of a sender's chain is
evicted for a better one.
"""

from __future__ import annotations

import heapq
from typing import Dict, Iterable, List, Optional, Tuple

from cheesecoin.core.errors import InvalidTx
from cheesecoin.core.formats import MAX_INT
from cheesecoin.core.ledger import Ledger
from cheesecoin.core.tx import check_tx_format, tx_signature_fault, txid


class Mempool:
    """Pending transactions by txid and by sender."""

    def __init__(self, ledger: Ledger, max_size: int = 5000) -> None:
        self.ledger = ledger
        self.max_size = max_size
        self.txs: Dict[str, dict] = {}  # txid -> tx
        self.by_sender: Dict[str, Dict[int, str]] = {}  # sender -> nonce -> txid

    def __len__(self) -> int:
        return len(self.txs)

    def __contains__(self, tx_id: str) -> bool:
        return tx_id in self.txs

    def get(self, tx_id: str) -> Optional[dict]:
        return self.txs.get(tx_id)

    def items(self) -> List[Tuple[str, dict]]:
        return list(self.txs.items())

    # -- what a sender has pending ---------------------------------------------

    def pending_nonce(self, address: str) -> int:
        """The next nonce a new transaction from ``address`` should use."""
        chain = self.by_sender.get(address)
        base = self.ledger.next_nonce(address)
        return base + len(chain) if chain else base

    def pending_balance(self, address: str) -> int:
        """The balance counting every mempool transaction (sent and received)."""
        balance = self.ledger.balance(address)
        for tx in self.txs.values():
            if tx["from"] == address:
                balance -= tx["amount"] + tx["fee"]
            if tx["to"] == address:
                balance += tx["amount"]
        return balance

    def spendable(self, address: str) -> int:
        """What a new transaction from ``address`` may spend now: its balance on
        the best stack less what its pending transactions spend. Coins coming
        in through the mempool are not spendable until they are confirmed."""
        every_nonce = MAX_INT + 1
        return self.ledger.balance(address) - self._spent_before(address, every_nonce)

    def _spent_before(self, sender: str, nonce: int) -> int:
        chain = self.by_sender.get(sender, {})
        return sum(
            self.txs[t]["amount"] + self.txs[t]["fee"] for n, t in chain.items() if n < nonce
        )

    # -- adding -----------------------------------------------------------------

    def add(self, tx: dict, check_signature: bool = True) -> Tuple[str, bool]:
        """Add a transaction: (txid, True) if new, (txid, False) if already here.

        Raises InvalidTx with rule tx-fields, tx-self, tx-signature, tx-nonce,
        tx-balance, tx-fee (a replacement without a higher fee) or
        mempool-full.
        """
        problem = check_tx_format(tx)
        if problem is not None:
            raise InvalidTx(*problem)
        return self._add(txid(tx), tx, check_signature)

    def _add(self, tx_id: str, tx: dict, check_signature: bool) -> Tuple[str, bool]:
        """``add`` of a well-formed transaction whose txid is known."""
        if tx_id in self.txs:
            return tx_id, False
        sender, nonce = tx["from"], tx["nonce"]
        base = self.ledger.next_nonce(sender)
        chain = self.by_sender.get(sender, {})
        replacing = chain.get(nonce)
        if replacing is None and nonce != base + len(chain):
            raise InvalidTx(
                "tx-nonce", f"nonce is {nonce}, the sender's next nonce is {base + len(chain)}"
            )
        if replacing is not None and tx["fee"] <= self.txs[replacing]["fee"]:
            raise InvalidTx(
                "tx-fee",
                "a transaction with this nonce is pending; a replacement needs a higher fee",
            )
        available = self.ledger.balance(sender) - self._spent_before(sender, nonce)
        if available < tx["amount"] + tx["fee"]:
            raise InvalidTx(
                "tx-balance",
                f"the sender has {available} available, needs {tx['amount'] + tx['fee']}",
            )
        fault = tx_signature_fault(tx) if check_signature else None
        if fault is not None:
            raise InvalidTx("tx-signature", f"the signature does not verify: {fault}")
        if replacing is None and len(self.txs) >= self.max_size:
            victim = self._eviction_candidate()
            if victim is None or self.txs[victim]["fee"] >= tx["fee"] or victim == tx_id:
                raise InvalidTx(
                    "mempool-full", "the mempool is full and this fee is not higher than the lowest"
                )
            self._remove(victim)
        if replacing is not None:
            self._remove(replacing, keep_later=True)
        self.txs[tx_id] = tx
        self.by_sender.setdefault(sender, {})[nonce] = tx_id
        if replacing is not None:
            self._trim_sender(sender)
        return tx_id, True

    def _eviction_candidate(self) -> Optional[str]:
        best: Optional[Tuple[int, str]] = None
        for chain in self.by_sender.values():
            last = chain[max(chain)]
            fee = self.txs[last]["fee"]
            if best is None or fee < best[0]:
                best = (fee, last)
        return best[1] if best else None

    def _remove(self, tx_id: str, keep_later: bool = False) -> None:
        """Remove one transaction and (unless keep_later) the sender's later ones."""
        tx = self.txs.pop(tx_id, None)
        if tx is None:
            return
        chain = self.by_sender.get(tx["from"], {})
        chain.pop(tx["nonce"], None)
        if not keep_later:
            for n in [n for n in chain if n > tx["nonce"]]:
                self.txs.pop(chain.pop(n), None)
        if not chain:
            self.by_sender.pop(tx["from"], None)

    def _trim_sender(self, sender: str) -> None:
        """Drop the sender's transactions its balance no longer covers."""
        chain = self.by_sender.get(sender, {})
        balance = self.ledger.balance(sender)
        for n in sorted(chain):
            tx = self.txs[chain[n]]
            balance -= tx["amount"] + tx["fee"]
            if balance < 0:
                self._remove(chain[n])
                break

    # -- following the stack --------------------------------------------------------

    def revalidate(self, extra: Iterable[dict] = ()) -> List[dict]:
        """Re-check everything against the (new) ledger, adding ``extra`` first.

        Call after the tip moves: confirmed transactions no longer fit their
        nonce and drop out; ``extra`` (an abandoned branch's transactions)
        come back if still valid. Returns the transactions dropped.
        """
        # Pooled transactions were checked for format when added and keep their txid.
        candidates: List[Tuple[Optional[str], dict]] = [(None, tx) for tx in extra]
        candidates += self.txs.items()
        self.txs.clear()
        self.by_sender.clear()
        dropped = []
        candidates.sort(key=lambda c: (c[1]["from"], c[1]["nonce"], -c[1]["fee"]))
        for tx_id, tx in candidates:
            try:
                if tx_id is None:
                    self.add(tx, check_signature=False)
                else:
                    self._add(tx_id, tx, check_signature=False)
            except InvalidTx:
                dropped.append(tx)
        return dropped

    # -- mining -----------------------------------------------------------------------

    def select(self, max_count: int) -> List[dict]:
        """Up to ``max_count`` transactions for a new cheese, highest fee first,
        each sender's in nonce order."""
        return [self.txs[t] for t in self.select_ids(max_count)]

    def select_ids(self, max_count: int) -> List[str]:
        """The txids of ``select`` (known here: none is computed again)."""
        queues = {s: [c[n] for n in sorted(c)] for s, c in self.by_sender.items()}
        heap = [(-self.txs[q[0]]["fee"], s, 0) for s, q in queues.items()]
        heapq.heapify(heap)
        out: List[str] = []
        while heap and len(out) < max_count:
            _, sender, i = heapq.heappop(heap)
            queue = queues[sender]
            out.append(queue[i])
            if i + 1 < len(queue):
                heapq.heappush(heap, (-self.txs[queue[i + 1]]["fee"], sender, i + 1))
        return out

    def dump(self) -> List[dict]:
        """The transactions, in an order that ``revalidate`` can re-add."""
        return sorted(self.txs.values(), key=lambda t: (t["from"], t["nonce"]))
