"""A member's shared state: its stack, mempool and who wants to hear of changes.

Pure Python, no Twisted: the "realm" that the member's protocols, the miner,
the miner port and the HTTP API all talk to. ``submit_cheese`` and
``submit_tx`` are the only ways in; listeners are told of every change to
the best stack and of every new mempool transaction, and decide for
themselves (relay, restart mining, refresh the explorer). What it reports of
the miner and of the peers comes from the services that own them, by
registration (``register_miner``, ``register_peers``; the Protocols are in
``cheesecoin.core.interfaces``).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from cheesecoin.core import pow as pow_mod
from cheesecoin.core.cheese import Network
from cheesecoin.core.errors import InvalidCheese, InvalidTx, StorageError
from cheesecoin.core.history import address_history
from cheesecoin.core.interfaces import (
    CheeseListener,
    MinerView,
    PeersView,
    RefusalListener,
    Source,
    StorageListener,
    TipListener,
    TxListener,
)
from cheesecoin.core.mempool import Mempool
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tree import AddResult
from cheesecoin.core.tx import txid

MINED = "miner"  # the source of the cheeses our own miners (built-in or external) hand the node


class NoPeers:
    """The peers a node reports until a peer manager registers: none, and ready."""

    def peers_info(self) -> List[dict]:
        return []

    def sync_status(self) -> Optional[str]:
        return None


class MemberNode:
    """Stack + mempool + listeners. ``source`` is whoever handed us the data
    (a peer protocol, "miner", "api", None); listeners use it to skip the sender."""

    def __init__(
        self,
        stack: CheeseStack,
        mempool_size: int = 5000,
        data_dir: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        node_id: Optional[str] = None,
    ) -> None:
        self.stack = stack
        self.network: Network = stack.network
        self.mempool = Mempool(stack.ledger, mempool_size)
        self.data_dir = data_dir
        self.clock = clock
        self.node_id = node_id or secrets.token_hex(16)
        self.tip_listeners: List[TipListener] = []
        self.tx_listeners: List[TxListener] = []
        # Told once, of the first StorageError: the store could not keep a
        # cheese (a full or read-only disk). The member stops on it.
        self.storage_listeners: List[StorageListener] = []
        # Told of every cheese this node accepted (on the best stack or not) and
        # of every one it refused, with the source (metrics).
        self.cheese_listeners: List[CheeseListener] = []
        self.refusal_listeners: List[RefusalListener] = []
        self.storage_error: Optional[Exception] = None
        # Registered by the services that own them; read by the API.
        self.miner: Optional[MinerView] = None
        self.peers: PeersView = NoPeers()

    # -- registration ----------------------------------------------------------------

    def register_miner(self, miner: MinerView) -> None:
        """The built-in miner whose ``mining`` and ``hashrate()`` the API reports."""
        self.miner = miner

    def register_peers(self, view: PeersView) -> None:
        """The peer manager whose peers and sync status the API reports."""
        self.peers = view

    def peers_info(self) -> List[dict]:
        """What the registered peer view says of each peer ([] before one registers)."""
        return self.peers.peers_info()

    def sync_status(self) -> Optional[str]:
        """Why the node is not ready (downloading from a peer with more work), or None."""
        return self.peers.sync_status()

    # -- ways in -------------------------------------------------------------------

    def submit_cheese(
        self,
        cheese: Any,
        source: Source = None,
        check_signatures: bool = True,
        ihash: Optional[str] = None,
    ) -> AddResult:
        """Validate and add a cheese; raises InvalidCheese. Listeners hear of tip changes."""
        try:
            result = self.stack.add_cheese(cheese, source, check_signatures, ihash)
        except InvalidCheese as e:
            partial = e.result
            if partial is not None and partial.accepted:
                self._accepted(partial, source)
            if partial is not None and partial.tip_changed:
                self._tip_changed(partial, source)
            for refused in list(self.refusal_listeners):
                refused(e, source)
            raise
        except StorageError as e:  # nothing of the failed write is held in memory either
            partial = e.result
            if partial is not None and partial.tip_changed:
                self._tip_changed(partial, source)
            self.storage_failed(e)
            raise
        if result.accepted:
            self._accepted(result, source)
        if result.tip_changed:
            self._tip_changed(result, source)
        return result

    def _accepted(self, result: AddResult, source: Source) -> None:
        for listener in list(self.cheese_listeners):
            listener(result, source)

    def storage_failed(self, error: Exception) -> None:
        """The store could not write: tell the storage listeners, once."""
        if self.storage_error is not None:
            return
        self.storage_error = error
        for listener in list(self.storage_listeners):
            listener(error)

    def _tip_changed(self, result: AddResult, source: Source) -> None:
        self.mempool.revalidate(result.abandoned_txs())
        for listener in list(self.tip_listeners):
            listener(result, source)

    def submit_tx(self, tx: Any, source: Source = None) -> Tuple[str, bool]:
        """Validate and add a transaction to the mempool: (txid, new). Raises InvalidTx."""
        tx_id, new = self.mempool.add(tx)
        if not new:
            return tx_id, False
        if (
            self.stack.tx_height(tx_id) is not None
        ):  # pragma: no cover - nonce makes this impossible
            return tx_id, False
        for listener in list(self.tx_listeners):
            listener(tx_id, tx, source)
        return tx_id, True

    # -- questions -------------------------------------------------------------------

    def tx_status(self, tx_id: str) -> Optional[Dict[str, Any]]:
        """{"tx", "status", "sequence_number"} for a mempool or confirmed transaction."""
        tx = self.mempool.get(tx_id)
        if tx is not None:
            return {"tx": tx, "status": "mempool", "sequence_number": None}
        found = self.stack.serving.confirmed_tx(tx_id)  # the txid index: no cheese decoded
        if found is None:
            return None
        return {"tx": found[1], "status": "confirmed", "sequence_number": found[0]}

    def balance(self, address: str) -> Dict[str, Any]:
        ledger = self.stack.ledger
        return {
            "address": address,
            "balance": ledger.balance(address),
            "nonce": ledger.next_nonce(address),
            "pending_balance": self.mempool.pending_balance(address),
            "pending_nonce": self.mempool.pending_nonce(address),
            "spendable": self.mempool.spendable(address),
        }

    def address_info(
        self, address: str, count: int, before: Optional[int] = None
    ) -> Dict[str, Any]:
        """The balance and the transactions of ``address``, newest first: the
        mempool's (on the first page only), then the best stack's below ``before``."""
        answer = self.balance(address)
        found: List[Dict[str, Any]] = []
        if before is None:
            for tx_id, tx in reversed(list(self.mempool.items())):
                if len(found) < count and address in (tx["from"], tx["to"]):
                    found.append(
                        {"txid": tx_id, "tx": tx, "status": "mempool", "sequence_number": None}
                    )
        for height, tx in address_history(
            self.stack.store, self.stack.main, address, count - len(found), before
        ):
            found.append(
                {"txid": txid(tx), "tx": tx, "status": "confirmed", "sequence_number": height}
            )
        answer["transactions"] = found
        return answer

    def health(self) -> Dict[str, Any]:
        """Ready once the stack is loaded (it is, once this object exists) and no
        download from a peer with more work is under way (docs/protocol.md section 7)."""
        if self.storage_error is not None:
            why: Optional[str] = f"the store cannot write: {self.storage_error}"
        else:
            why = self.sync_status()
        answer: Dict[str, Any] = {
            "ready": why is None,
            "height": self.stack.height,
            "tip": self.stack.tip.smell,
        }
        if why is not None:
            answer["reason"] = why
        return answer

    def status(self) -> Dict[str, Any]:
        tip = self.stack.tip
        miner = self.miner
        return {
            "network": self.network.name,
            "blue_cheese": self.network.smell,
            "node_id": self.node_id,
            "height": tip.height,
            "tip": tip.smell,
            "work": str(tip.work),
            "bits": self.stack.next_bits(tip),
            "timestamp": tip.timestamp,
            "peers": self.peers_info(),
            "mempool": len(self.mempool),
            "mining": bool(miner is not None and miner.mining),
            "hashrate": float(miner.hashrate()) if miner is not None else 0.0,
            # the nonce search a miner here uses: sha-ni, portable-c or python
            "pow_backend": pow_mod.backend(),
        }

    # -- the mempool across restarts ----------------------------------------------------

    def mempool_path(self) -> Optional[str]:
        return os.path.join(self.data_dir, "mempool.json") if self.data_dir else None

    def save_mempool(self) -> None:
        path = self.mempool_path()
        if path is None:
            return
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.mempool.dump(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_mempool(self) -> int:
        """Re-add saved transactions that are still valid; returns how many."""
        path = self.mempool_path()
        if path is None or not os.path.exists(path):
            return 0
        try:
            with open(path, encoding="utf-8") as f:
                txs = json.load(f)
        except (OSError, ValueError):
            return 0
        if not isinstance(txs, list):
            return 0
        count = 0
        for tx in txs:
            try:
                self.mempool.add(tx)
                count += 1
            except (InvalidTx, TypeError, KeyError, AttributeError):
                pass
        return count
