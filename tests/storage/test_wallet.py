"""Wallet files (cheesecoin.wallet): making, loading, protecting, signing like the vectors."""

from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from procs import vector

from cheesecoin.cli.prompts import ask_passphrase
from cheesecoin.core.tx import txid, verify_signature
from cheesecoin.storage.wallet import (
    WalletError,
    create_wallet,
    load_wallet,
    member_address,
    read_wallet_file,
    wallet_address,
)
from cheesecoin.testing.chain import key_from_seed


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CHEESECOIN_WALLET", raising=False)
    monkeypatch.delenv("CHEESECOIN_PASSPHRASE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_create_then_load(tmp_path) -> None:
    path = tmp_path / "w.json"
    made = create_wallet(str(path))
    assert _mode(path) == 0o600
    document = json.loads(path.read_text())
    assert document["address"] == made.address and document["encrypted"] is False
    assert document["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    loaded = load_wallet(str(path))
    assert loaded.address == made.address == wallet_address(str(path))
    assert os.listdir(tmp_path) == ["w.json"]  # no temporary file left behind


def test_mode_is_0600_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        create_wallet(str(tmp_path / "w.json"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "w.json") == 0o600


def test_default_path_is_in_home_with_a_private_directory(tmp_path) -> None:
    made = create_wallet()
    path = tmp_path / "home" / ".cheesecoin" / "wallet.json"
    assert path.exists() and _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert load_wallet().address == made.address


def test_env_names_the_wallet(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CHEESECOIN_WALLET", str(tmp_path / "env.json"))
    made = create_wallet()
    assert (tmp_path / "env.json").exists()
    assert wallet_address() == made.address


def test_never_overwritten(tmp_path) -> None:
    path = tmp_path / "w.json"
    create_wallet(str(path))
    before = path.read_bytes()
    with pytest.raises(WalletError, match="already exists"):
        create_wallet(str(path))
    assert path.read_bytes() == before
    other = tmp_path / "other"
    other.write_text("my notes")
    with pytest.raises(WalletError, match="already exists"):
        create_wallet(str(other))
    assert other.read_text() == "my notes"


def test_dangling_symlink_is_not_followed(tmp_path) -> None:
    link = tmp_path / "w.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(WalletError, match="already exists"):
        create_wallet(str(link))
    assert not (tmp_path / "elsewhere.json").exists()


def test_unwritable_directory_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WalletError, match="cannot write the wallet"):
        create_wallet(str(blocker / "w.json"))


def test_encrypted_with_passphrase_from_env(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "w.json")
    made = create_wallet(path, passphrase="correct horse")
    document = read_wallet_file(path)
    assert document["encrypted"] is True
    assert "ENCRYPTED PRIVATE KEY" in document["private_key"]
    assert wallet_address(path) == made.address  # no passphrase needed for the address
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "correct horse")
    assert load_wallet(path).address == made.address
    assert load_wallet(path, lambda: "correct horse").address == made.address


def test_wrong_passphrase(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "w.json")
    create_wallet(path, passphrase="right")
    with pytest.raises(WalletError, match="wrong passphrase"):
        load_wallet(path, lambda: "wrong")
    # An empty passphrase is refused in the same words when using a wallet
    # as when making one.
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "")
    with pytest.raises(WalletError, match=r"CHEESECOIN_PASSPHRASE is empty"):
        load_wallet(path)
    with pytest.raises(WalletError, match=r"CHEESECOIN_PASSPHRASE is empty"):
        create_wallet(str(tmp_path / "other.json"), passphrase=ask_passphrase(confirm=True))
    with pytest.raises(WalletError, match="the passphrase is empty"):
        load_wallet(path, lambda: "")


def _corrupt(path, **changes) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a wallet file"),
        (b"not json", "not a wallet file"),
        (b"\xff\xfe", "not a wallet file"),
        (b"[1, 2]", "not a wallet file"),
        (b'{"address": "x"}', "not a CheeseCoin wallet file"),
    ],
)
def test_corrupt_file(tmp_path, content, message) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(content)
    with pytest.raises(WalletError, match=message):
        load_wallet(str(path))


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(WalletError, match="no wallet at .*wallet create"):
        load_wallet(str(tmp_path / "none.json"))
    with pytest.raises(WalletError, match="is a directory"):
        load_wallet(str(tmp_path))


def test_checked_fields(tmp_path) -> None:
    path = tmp_path / "w.json"
    create_wallet(str(path))
    good = path.read_text()
    other = key_from_seed("someone else")
    cases = [
        ({"address": "ABC"}, "address is not"),
        ({"address": other.public_key().public_bytes_raw().hex()}, "does not match"),
        ({"private_key": 5}, "private key is missing"),
        ({"encrypted": "no"}, "private key is missing"),
        (
            {"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"},
            "not a readable",
        ),
        ({"encrypted": True}, "not a readable"),  # says encrypted, is not
    ]
    for changes, message in cases:
        path.write_text(good)
        _corrupt(path, **changes)
        with pytest.raises(WalletError, match=message):
            load_wallet(str(path), lambda: "pw")


def test_not_an_ed25519_key(tmp_path) -> None:
    path = tmp_path / "w.json"
    create_wallet(str(path))
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _corrupt(path, private_key=pem.decode())
    with pytest.raises(WalletError, match="not an Ed25519 key"):
        load_wallet(str(path))


def test_member_address(tmp_path) -> None:
    data_dir = tmp_path / "member"
    data_dir.mkdir()
    first = member_address(str(data_dir))
    assert _mode(data_dir / "wallet.json") == 0o600
    assert member_address(str(data_dir)) == first
    assert load_wallet(str(data_dir / "wallet.json")).address == first
    _corrupt(data_dir / "wallet.json", address="0" * 64)
    with pytest.raises(WalletError, match="does not match"):
        member_address(str(data_dir))


def test_member_address_of_an_encrypted_wallet_needs_no_passphrase(tmp_path) -> None:
    made = create_wallet(str(tmp_path / "wallet.json"), passphrase="pw")
    assert member_address(str(tmp_path)) == made.address


# -- the vectors ------------------------------------------------------------------------


def test_signing_matches_the_vectors(tmp_path) -> None:
    chain = vector("chain-vectors.json")
    keys = {}
    for name, entry in chain["keys"].items():
        key = key_from_seed(entry["seed"])
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        assert raw.hex() == entry["private_key"]
        made = create_wallet(str(tmp_path / f"{name}.json"), private_key=key)
        assert made.address == entry["address"]
        keys[entry["address"]] = load_wallet(made.path)
    txs = [
        tx
        for cheese in chain["cheeses"][1:]
        for tx in cheese["unit_of_information"]["transactions"]
    ]
    assert len(txs) == len(chain["txids"]) == 3
    for tx, expected_txid in zip(txs, chain["txids"].values()):
        signed = keys[tx["from"]].sign(tx["to"], tx["amount"], tx["fee"], tx["nonce"], tx["memo"])
        assert signed == tx  # Ed25519 is deterministic
        assert txid(signed) == expected_txid
        assert verify_signature(signed)


def test_public_info(tmp_path) -> None:
    made = create_wallet(str(tmp_path / "w.json"))
    info = made.public_info()
    assert info["address"] == made.address
    public = serialization.load_pem_public_key(info["public_key"].encode())
    assert public.public_bytes_raw().hex() == made.address
