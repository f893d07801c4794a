"""The terminal prompts of the command line (cheesecoin.cli.prompts), and that
the wallet files themselves (cheesecoin.storage.wallet) never prompt."""

from __future__ import annotations

import getpass

import pytest

from cheesecoin.cli import prompts
from cheesecoin.storage.wallet import WalletError, create_wallet, load_wallet


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("CHEESECOIN_WALLET", raising=False)
    monkeypatch.delenv("CHEESECOIN_PASSPHRASE", raising=False)


def test_passphrase_is_asked_twice(tmp_path, monkeypatch) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr(prompts.getpass, "getpass", lambda prompt="": next(answers))
    with pytest.raises(WalletError, match="differ"):
        prompts.ask_passphrase(confirm=True)
    answers = iter(["same", "same"])
    assert prompts.ask_passphrase(confirm=True) == "same"
    answers = iter(["", ""])
    with pytest.raises(WalletError, match="empty"):
        prompts.ask_passphrase(confirm=True)

    def no_terminal(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(prompts.getpass, "getpass", no_terminal)
    with pytest.raises(WalletError, match="CHEESECOIN_PASSPHRASE"):
        prompts.ask_passphrase(confirm=False)


def test_opening_a_wallet_asks_once_on_the_terminal(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "w.json")
    made = create_wallet(path, passphrase="gouda")
    asked = []

    def terminal(prompt: str = "") -> str:
        asked.append(prompt)
        return "gouda"

    monkeypatch.setattr(getpass, "getpass", terminal)
    assert load_wallet(path, prompts.wallet_passphrase).address == made.address
    assert asked == ["Wallet passphrase: "]


def test_the_wallet_file_layer_never_prompts(tmp_path, monkeypatch) -> None:
    """Without $CHEESECOIN_PASSPHRASE and without a passphrase given, opening an
    encrypted wallet is one clear error: storage reads no terminal."""
    path = str(tmp_path / "w.json")
    create_wallet(path, passphrase="brie")

    def terminal(prompt: str = "") -> str:
        raise AssertionError("storage asked the terminal")

    monkeypatch.setattr(getpass, "getpass", terminal)
    with pytest.raises(WalletError, match="no passphrase given .*CHEESECOIN_PASSPHRASE"):
        load_wallet(path)
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "brie")
    assert (
        load_wallet(path).address
        == create_wallet(
            str(tmp_path / "x.json"), passphrase="brie", private_key=load_wallet(path).private_key
        ).address
    )
