"""A damaged database and ``--reindex`` (after Bitcoin Core's feature_reindex.py).

A row corrupted with sqlite3 makes the member refuse to start with one clear
line; ``twistd cheesemember --reindex`` (or ``cheesecoin reindex DATA_DIR``)
rebuilds the database from the cheeses that still parse, re-validating them
in full, and the member starts at the longest valid prefix.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from typing import List

import pytest
from procs import Proc, free_port, http_json, run_member

from cheesecoin.core.cheese import canonical
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx
from cheesecoin.storage.reindex import reindex
from cheesecoin.storage.sqlite import DB_NAME, StorageError, open_stack
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child, payment_stack

NET = make_network("reindextest", bits=1, timestamp=int(time.time()) - 10**6)
ALICE = key_from_seed("reindex-alice")


def stored(tmp_path, cheeses: List[dict], name: str = "data") -> str:
    data = str(tmp_path / name)
    stack = open_stack(data, NET)
    for cheese in cheeses[1:]:
        stack.add_cheese(cheese)
    stack.close()
    return data


def reference(cheeses: List[dict]) -> CheeseStack:
    stack = CheeseStack(NET)
    for cheese in cheeses[1:]:
        stack.add_cheese(cheese, check_signatures=True)
    return stack


def corrupt(data: str, sql: str, *args) -> None:
    db = sqlite3.connect(os.path.join(data, DB_NAME))
    db.execute(sql, args)
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def cheeses() -> List[dict]:
    return payment_stack(NET, 40, 3, n_keys=8, seed="reindex")


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE cheeses SET body = 'not json' WHERE height = 12",
        "UPDATE cheeses SET body = replace(body, '\"nonce\":', '\"nonce\":1') WHERE height = 12",
        "UPDATE cheeses SET body = '[1,2]' WHERE height = 12",
    ],
)
def test_a_corrupted_row_is_refused_at_start_and_reindex_keeps_the_valid_prefix(
    tmp_path, cheeses, damage
) -> None:
    side = [
        mine_child(cheeses[30], NET.bits, address_of(ALICE), timestamp=cheeses[30]["timestamp"] + 3)
    ]
    data = stored(tmp_path, cheeses + side)
    corrupt(data, damage)
    with pytest.raises(StorageError, match="corrupted"):
        open_stack(data, NET)
    old_bytes = open(os.path.join(data, DB_NAME), "rb").read()
    result = reindex(data, NET)
    assert (result.rows, result.unreadable, result.invalid) == (42, 1, 0)
    assert result.orphaned == 40 - 12 + 1  # the cheeses above the broken one, the side cheese too
    assert (result.height, result.tip) == (11, cheeses[11]["smell"])
    again = open_stack(data, NET)
    assert again.height == 11 and again.tip.smell == cheeses[11]["smell"]
    assert again.ledger == reference(cheeses[:12]).ledger
    again.close()
    assert open(os.path.join(data, DB_NAME + ".bak"), "rb").read()[:100] == old_bytes[:100]
    assert not os.path.exists(os.path.join(data, DB_NAME + ".reindex"))
    assert reindex(data, NET).height == 11  # a second reindex changes nothing


def test_reindex_checks_the_signatures_a_normal_start_does_not(tmp_path, cheeses) -> None:
    """A cheese with a forged signature written straight into the database (with a
    valid proof of work) is loaded by a normal start, which trusts what it stored;
    --reindex re-validates everything and drops it."""
    data = stored(tmp_path, cheeses)
    payer = key_from_seed("reindex-0")  # paid by the first cheeses of payment_stack
    forged_tx = dict(
        sign_tx(
            payer, address_of(ALICE), 1, 0, reference(cheeses).ledger.next_nonce(address_of(payer))
        ),
        amount=2,
    )
    forged = mine_child(cheeses[-1], NET.bits, address_of(ALICE), [forged_tx])
    corrupt(
        data,
        "INSERT INTO cheeses (smell, parent, height, body) VALUES (?, ?, ?, ?)",
        forged["smell"],
        forged["parent_smell"],
        forged["sequence_number"],
        canonical(forged).decode(),
    )
    corrupt(data, "INSERT OR REPLACE INTO meta VALUES ('tip', ?)", forged["smell"])
    trusting = open_stack(data, NET)
    assert trusting.tip.smell == forged["smell"]  # what a normal start would run on
    trusting.close()
    result = reindex(data, NET)
    assert (result.invalid, result.height, result.tip) == (1, 40, cheeses[-1]["smell"])
    again = open_stack(data, NET)
    assert again.tip.smell == cheeses[-1]["smell"] and again.ledger == reference(cheeses).ledger
    assert forged["smell"] not in again


def test_reindex_refuses_what_it_cannot_read(tmp_path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        reindex(str(tmp_path), NET)
    (tmp_path / DB_NAME).write_bytes(b"junk" * 100)
    with pytest.raises(StorageError, match="not an SQLite database"):
        reindex(str(tmp_path), NET)
    other = tmp_path / "other"
    open_stack(str(other), make_network("elsewhere", bits=1)).close()
    with pytest.raises(StorageError, match="network"):
        reindex(str(other), NET)


def test_the_member_refuses_a_corrupted_database_then_starts_after_reindex(
    tmp_path, cheeses, procs
) -> None:
    data = stored(tmp_path, cheeses)
    network_file = tmp_path / "net.json"
    network_file.write_text(json.dumps(NET.blue_cheese))
    corrupt(data, "UPDATE cheeses SET body = 'garbage' WHERE height = 25")
    refused = run_member(tmp_path, data, "--network", str(network_file))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    [line] = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert "corrupted" in line and "--reindex" in line

    api = free_port()
    member = Proc.twistd(
        "cheesemember",
        [
            "--network",
            str(network_file),
            "--data-dir",
            data,
            "--port",
            str(free_port()),
            "--interface",
            "127.0.0.1",
            "--api-port",
            str(api),
            "--miner-port",
            str(free_port()),
            "--reindex",
        ],
        str(tmp_path),
        name="member",
    )
    procs.append(member)
    member.wait_for("HTTP API on", timeout=60)
    status = http_json(f"http://127.0.0.1:{api}/api/status")
    assert (status["height"], status["tip"]) == (24, cheeses[24]["smell"])
    assert (
        "Reindexed 41 stored cheeses: kept 25, dropped 1 unreadable, 0 invalid and 15"
        in member.output()
    )
    member.stop()
    assert os.path.exists(os.path.join(data, DB_NAME + ".bak"))


def test_cheesecoin_reindex_command(tmp_path, cheeses) -> None:
    data = stored(tmp_path, cheeses)
    network_file = tmp_path / "net.json"
    network_file.write_text(json.dumps(NET.blue_cheese))
    corrupt(data, "UPDATE cheeses SET body = '{}' WHERE height = 30")
    command = [sys.executable, "-m", "cheesecoin.cli", "reindex"]
    done = subprocess.run(
        command + [data, "--network", str(network_file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "kept 30" in done.stdout and "height 29" in done.stdout
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / DB_NAME).write_text("junk")
    failed = subprocess.run(command + [str(junk)], capture_output=True, text=True, timeout=60)
    assert (
        failed.returncode == 1
        and failed.stderr.count("\n") == 1
        and "Traceback" not in failed.stderr
    )


def test_reindex_salvages_the_readable_prefix_of_a_file_with_damaged_pages(
    tmp_path, cheeses
) -> None:
    data = stored(tmp_path, cheeses)
    path = os.path.join(data, DB_NAME)
    raw = open(path, "rb").read()
    cut = len(raw) // 3
    with open(path, "wb") as f:
        f.write(raw[:cut] + b"\x00" * 8192 + raw[cut + 8192 :])
    result = reindex(data, NET)
    again = open_stack(data, NET)
    height = again.height
    assert 0 <= height <= 40 and again.tip.smell == cheeses[height]["smell"] == result.tip
    assert again.ledger == reference(cheeses[: height + 1]).ledger
    again.close()
