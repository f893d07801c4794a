"""A payment is not stranded when the only miner loses its mempool.

Two real members: alice (the miner) and bob, connected. A payment is given
to bob, reaches alice, and alice is killed -9 before mining it, losing her
mempool. When she comes back, bob hands her his pending transactions right
after the handshake, and she mines the payment.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from procs import Proc, free_port, http_json, wait_until

from cheesecoin.core.tx import address_of
from cheesecoin.storage.wallet import MEMBER_WALLET, load_wallet
from cheesecoin.testing.chain import key_from_seed, make_network

pytestmark = pytest.mark.slow

NETWORK = make_network(name="stranded", bits=1, timestamp=int(time.time()) - 10**6)
CAROL = address_of(key_from_seed("stranded-carol"))


def start(
    procs: list, tmp_path, name: str, network_file: str, port: int, api: int, *extra: str
) -> Proc:
    options = [
        "--network",
        network_file,
        "--data-dir",
        str(tmp_path / name),
        "--port",
        str(port),
        "--interface",
        "127.0.0.1",
        "--api-port",
        str(api),
        "--miner-port",
        str(free_port()),
        *extra,
    ]
    proc = Proc.twistd("cheesemember", options, str(tmp_path), name=f"{name}-{len(procs)}")
    procs.append(proc)
    proc.wait_for("HTTP API on", timeout=60)
    return proc


def test_a_restarted_miner_gets_the_pending_payment_back_from_its_peer_and_mines_it(
    tmp_path, procs
) -> None:
    network_file = str(tmp_path / "network.json")
    with open(network_file, "w", encoding="utf-8") as f:
        json.dump(NETWORK.blue_cheese, f)
    alice_port, alice_api, bob_port, bob_api = free_port(), free_port(), free_port(), free_port()
    alice_url, bob_url = f"http://127.0.0.1:{alice_api}", f"http://127.0.0.1:{bob_api}"

    # Alice mines a few cheeses to have coins, then stops.
    alice = start(
        procs,
        tmp_path,
        "alice",
        network_file,
        alice_port,
        alice_api,
        "--mine",
        "--mining-workers",
        "1",
    )
    wait_until(
        lambda: http_json(f"{alice_url}/api/status")["height"] >= 3, timeout=60, what="alice mining"
    )
    alice.stop()

    # Alice (not mining now) and bob, connected; alice pays carol through bob.
    alice = start(procs, tmp_path, "alice", network_file, alice_port, alice_api)
    start(
        procs,
        tmp_path,
        "bob",
        network_file,
        bob_port,
        bob_api,
        "--connect",
        f"127.0.0.1:{alice_port}",
    )
    wait_until(
        lambda: (
            http_json(f"{bob_url}/api/status")["height"]
            == http_json(f"{alice_url}/api/status")["height"]
        ),
        timeout=60,
        what="bob in sync with alice",
    )
    wallet = load_wallet(os.path.join(str(tmp_path / "alice"), MEMBER_WALLET))
    account = http_json(f"{bob_url}/api/balance/{wallet.address}")
    tx = wallet.sign(CAROL, 7, 1, account["pending_nonce"], "not stranded")
    tx_id = http_json(f"{bob_url}/api/transactions", tx)["txid"]
    wait_until(
        lambda: http_json(f"{alice_url}/api/mempool")["transactions"],
        timeout=30,
        what="the payment at alice",
    )

    # Alice dies with the payment only in memory, and comes back mining.
    alice.kill9()
    mempool_file = tmp_path / "alice" / "mempool.json"
    if mempool_file.exists():
        mempool_file.unlink()  # as if it had never been saved
    # It dials bob itself (bob would redial it only after its backoff).
    start(
        procs,
        tmp_path,
        "alice",
        network_file,
        alice_port,
        alice_api,
        "--mine",
        "--mining-workers",
        "1",
        "--connect",
        f"127.0.0.1:{bob_port}",
    )

    def confirmed_at_alice() -> bool:
        return http_json(f"{alice_url}/api/tx/{tx_id}")["status"] == "confirmed"

    try:
        wait_until(
            confirmed_at_alice, timeout=60, what="the payment confirmed by the restarted alice"
        )
    except AssertionError:
        raise AssertionError("\n".join(p.output()[-2000:] for p in procs[-2:]))
    assert http_json(f"{alice_url}/api/balance/{CAROL}")["balance"] == 7
