"""Helpers that build valid networks, keys and stacks for tests and benchmarks.

Pure Python. Networks made here use low bits so cheeses are mined in
microseconds; nothing here is used by a running member.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cheesecoin.core.cheese import (
    Network,
    info_hash,
    meets_pow,
    mine_blue_cheese,
    network_from_blue_cheese,
    preimage_prefix,
    sha1_hex,
)
from cheesecoin.core.pow import search_nonce
from cheesecoin.core.tx import address_of, sign_tx

BASE_TIME = 1795300000


def key_from_seed(seed: str) -> Ed25519PrivateKey:
    """The vectors' rule: private key = SHA-256 of the seed's UTF-8 bytes."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode("utf-8")).digest())


def make_network(
    name: str = "testnet",
    bits: int = 1,
    retarget_interval: int = 0,
    target_spacing: int = 10,
    reward: int = 50,
    max_transactions: int = 1000,
    timestamp: int = BASE_TIME,
) -> Network:
    return network_from_blue_cheese(
        mine_blue_cheese(
            name,
            bits,
            timestamp,
            target_spacing,
            retarget_interval,
            reward,
            max_transactions,
            "test",
        )
    )


def mine_child(
    parent: dict,
    bits: int,
    miner: str,
    transactions: Optional[List[dict]] = None,
    timestamp: Optional[int] = None,
    note: Optional[str] = None,
    start_nonce: int = 0,
) -> dict:
    """A mined child of ``parent`` (which must be a cheese dict)."""
    info: Dict[str, object] = {"miner": miner, "transactions": list(transactions or [])}
    if note is not None:
        info["note"] = note
    cheese = {
        "parent_smell": parent["smell"],
        "sequence_number": parent["sequence_number"] + 1,
        "timestamp": parent["timestamp"] + 10 if timestamp is None else timestamp,
        "bits": bits,
        "unit_of_information": info,
    }
    prefix = preimage_prefix(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        bits,
        info_hash(info),
    )
    nonce, smell = search_nonce(prefix, bits, start_nonce, 2**64)
    cheese["nonce"] = nonce
    cheese["smell"] = smell
    return cheese


class ChainBuilder:
    """Builds branches on a fixed-difficulty network (retarget_interval 0)."""

    def __init__(self, network: Network) -> None:
        self.network = network

    def extend(
        self,
        parent: dict,
        count: int,
        miner: str,
        txs_per_cheese: Optional[List[List[dict]]] = None,
        note: Optional[str] = None,
    ) -> List[dict]:
        out = []
        for i in range(count):
            txs = txs_per_cheese[i] if txs_per_cheese else []
            parent = mine_child(parent, self.network.bits, miner, txs, note=note)
            out.append(parent)
        return out


def forged_header(header: dict, **changes: object) -> dict:
    """``header`` with ``changes`` and its smell recomputed: mined to its bits
    where they are 0..160 (a header that only its bits make invalid), any
    nonce where they are not."""
    out = dict(header, **changes)
    prefix = preimage_prefix(
        out["parent_smell"], out["sequence_number"], out["timestamp"], out["bits"], out["info_hash"]
    )
    bits = out["bits"]
    nonce = 0
    while True:
        smell = sha1_hex((prefix + str(nonce)).encode("ascii"))
        if not 0 <= bits <= 160 or meets_pow(smell, bits):
            break
        nonce += 1
    out["nonce"], out["smell"] = nonce, smell
    return out


def payment_stack(
    network: Network, n_cheeses: int, txs_per_cheese: int, n_keys: int = 50, seed: str = "bench"
) -> List[dict]:
    """A valid stack (Blue Cheese first) whose cheeses carry signed payments.

    The first ``n_keys`` cheeses pay each key a reward; later cheeses carry
    ``txs_per_cheese`` payments between the keys.
    """
    keys = [key_from_seed(f"{seed}-{i}") for i in range(n_keys)]
    addresses = [address_of(k) for k in keys]
    balances = {a: 0 for a in addresses}
    nonces = {a: 0 for a in addresses}
    cheeses = [network.blue_cheese]
    parent = network.blue_cheese
    for height in range(1, n_cheeses + 1):
        miner = addresses[height % n_keys]
        txs: List[dict] = []
        if height > n_keys:
            for j in range(txs_per_cheese):
                i = (height * txs_per_cheese + j) % n_keys
                sender, to = addresses[i], addresses[(i + 1 + j) % n_keys]
                if sender == to:
                    to = addresses[(i + 1) % n_keys]
                if balances[sender] < 2:
                    continue
                tx = sign_tx(keys[i], to, 1, 1, nonces[sender], f"p{height}.{j}")
                balances[sender] -= 2
                balances[to] += 1
                nonces[sender] += 1
                txs.append(tx)
        parent = mine_child(parent, network.bits, miner, txs)
        balances[miner] += network.reward + sum(t["fee"] for t in txs)
        cheeses.append(parent)
    return cheeses
