"""Wallet files: one Ed25519 key and its address (docs/protocol.md s.4 and s.9).

A wallet is a small JSON file, mode 0600, never overwritten::

    {"cheesecoin_wallet": 1, "address": HEX64, "encrypted": BOOL,
     "private_key": "-----BEGIN PRIVATE KEY-----..."}

The key is PKCS#8 PEM, encrypted with the best available scheme when the
wallet was made with a passphrase. The address is in clear so it can be
shown without the passphrase; loading the key checks that they match.
The default file is ``~/.cheesecoin/wallet.json`` (or ``$CHEESECOIN_WALLET``);
``$CHEESECOIN_PASSPHRASE`` supplies the passphrase to scripts. Nothing here
prompts: the command line asks on the terminal (``cheesecoin.cli.prompts``).
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Callable, Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cheesecoin.core.formats import ADDRESS_RE
from cheesecoin.core.tx import address_of, sign_tx, tx_signature_fault

WALLET_ENV = "CHEESECOIN_WALLET"
PASSPHRASE_ENV = "CHEESECOIN_PASSPHRASE"
FORMAT_VERSION = 1
MEMBER_WALLET = "wallet.json"  # a member's own wallet, in its data directory
_MAX_FILE = 64 * 1024


class WalletError(Exception):
    """A wallet that cannot be made or used; the message is one line for people."""


def default_wallet_path() -> str:
    """``$CHEESECOIN_WALLET``, else ``~/.cheesecoin/wallet.json``."""
    return os.environ.get(WALLET_ENV) or os.path.join(
        os.path.expanduser("~"), ".cheesecoin", "wallet.json"
    )


def passphrase_from_env() -> Optional[str]:
    return os.environ.get(PASSPHRASE_ENV)


def env_passphrase() -> str:
    """The passphrase of ``$CHEESECOIN_PASSPHRASE``; WalletError when it is
    empty or not set (storage never prompts: ``cheesecoin.cli.prompts`` does)."""
    from_env = passphrase_from_env()
    if from_env is None:
        raise WalletError(f"no passphrase given (set ${PASSPHRASE_ENV} for scripts)")
    if not from_env:
        raise WalletError(f"${PASSPHRASE_ENV} is empty: an encrypted wallet needs a passphrase")
    return from_env


class Wallet:
    """A loaded wallet: its file, address and private key."""

    def __init__(self, path: str, private_key: Ed25519PrivateKey) -> None:
        self.path = path
        self.private_key = private_key
        self.address = address_of(private_key)

    def sign(self, to: str, amount: int, fee: int, nonce: int, memo: str = "") -> dict:
        """A signed transaction from this wallet, checked under the rule every
        member applies (WalletError if it would be refused: a damaged key)."""
        tx = sign_tx(self.private_key, to, amount, fee, nonce, memo)
        fault = tx_signature_fault(tx)
        if fault is not None:
            raise WalletError(f"{self.path}: the wallet's signature does not verify ({fault})")
        return tx

    def public_info(self) -> dict:
        """What may be shown to anyone: the address and the public key as PEM."""
        return public_info(self.address)


def public_info(address: str) -> dict:
    """The address and its Ed25519 public key (SubjectPublicKeyInfo PEM)."""
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(address))
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"address": address, "public_key": pem.decode("ascii")}


# -- writing ----------------------------------------------------------------------------


def _write_new_file(path: str, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (mode 0600) atomically; never replace one.

    The bytes go to a fresh temporary file (O_CREAT|O_EXCL, 0600) that is
    fsynced and then hard-linked to ``path``: the link fails if ``path``
    exists, and ``path`` is never seen half written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def create_wallet(
    path: Optional[str] = None,
    passphrase: Optional[str] = None,
    private_key: Optional[Ed25519PrivateKey] = None,
    make_directory: Optional[bool] = None,
) -> Wallet:
    """Make a new wallet file at ``path`` (a new key unless ``private_key``).

    With ``passphrase`` the key is encrypted. Raises WalletError if the file
    exists or cannot be written. A missing directory is made (mode 0700)
    only for the default wallet (``path`` None) or with ``make_directory``:
    a mistyped ``--wallet`` path is an error, not a new folder tree.
    """
    if make_directory is None:
        make_directory = path is None
    path = path or default_wallet_path()
    if os.path.lexists(path):
        raise WalletError(
            f"{path} already exists; a wallet is never overwritten (use --wallet FILE for another)"
        )
    key = private_key or Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8", "surrogateescape"))
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    document = {
        "cheesecoin_wallet": FORMAT_VERSION,
        "address": address_of(key),
        "encrypted": bool(passphrase),
        "private_key": pem.decode("ascii"),
    }
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if not make_directory:
            raise WalletError(
                f"cannot write the wallet {path}: the directory {directory} does not exist"
            )
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        try:
            _write_new_file(path, data)
        except FileExistsError:
            raise WalletError(
                f"{path} already exists; a wallet is never overwritten "
                "(use --wallet FILE for another)"
            )
    except OSError as e:
        raise WalletError(f"cannot write the wallet {path}: {e.strerror or e}")
    return Wallet(path, key)


# -- reading ----------------------------------------------------------------------------


def read_wallet_file(path: Optional[str] = None) -> dict:
    """The checked JSON of a wallet file (the key is not decrypted)."""
    path = path or default_wallet_path()
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        raise WalletError(f"no wallet at {path} (make one with: cheesecoin wallet create)")
    except IsADirectoryError:
        raise WalletError(f"{path} is a directory, not a wallet file")
    except OSError as e:
        raise WalletError(f"cannot read the wallet {path}: {e.strerror or e}")
    try:
        document = json.loads(data.decode("utf-8")) if len(data) <= _MAX_FILE else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise WalletError(f"{path} is not a wallet file (not a JSON object)")
    if document.get("cheesecoin_wallet") != FORMAT_VERSION:
        raise WalletError(f"{path} is not a CheeseCoin wallet file (version {FORMAT_VERSION})")
    address = document.get("address")
    if not isinstance(address, str) or not ADDRESS_RE.match(address):
        raise WalletError(f"{path}: the address is not 64 lowercase hex characters")
    if not isinstance(document.get("private_key"), str) or not isinstance(
        document.get("encrypted"), bool
    ):
        raise WalletError(f"{path}: the private key is missing")
    return document


def wallet_address(path: Optional[str] = None) -> str:
    """The address of a wallet file, without its passphrase.

    An unencrypted wallet's key is loaded and checked against the address
    (WalletError if they differ); an encrypted one's address is read as
    written (see ``address_checked``).
    """
    document = read_wallet_file(path)
    if not document["encrypted"]:
        return load_wallet(path).address
    return document["address"]


def address_checked(path: Optional[str] = None) -> bool:
    """Whether ``wallet_address`` could check the address against the key
    (it cannot for an encrypted wallet without its passphrase)."""
    return not read_wallet_file(path)["encrypted"]


def load_wallet(
    path: Optional[str] = None, passphrase: Optional[Callable[[], str]] = None
) -> Wallet:
    """Load a wallet and check its key against its address.

    ``passphrase`` is called only for an encrypted wallet (default: the
    environment, ``env_passphrase``; the command line passes its prompt).
    """
    path = path or default_wallet_path()
    document = read_wallet_file(path)
    password: Optional[bytes] = None
    if document["encrypted"]:
        password = (passphrase or env_passphrase)().encode("utf-8", "surrogateescape")
        if not password:  # encrypted wallets are made with a passphrase
            raise WalletError(f"the passphrase is empty: the wallet {path} is encrypted with one")
    try:
        key = serialization.load_pem_private_key(document["private_key"].encode("ascii"), password)
    except ValueError as e:
        if password is not None and "password" in str(e).lower():
            raise WalletError(f"wrong passphrase for the wallet {path}")
        raise WalletError(f"{path}: the private key is not a readable PKCS#8 PEM key")
    except (TypeError, UnicodeEncodeError):  # "encrypted" disagrees with the key, or not ASCII
        raise WalletError(f"{path}: the private key is not a readable PKCS#8 PEM key")
    if not isinstance(key, Ed25519PrivateKey):
        raise WalletError(f"{path}: the private key is not an Ed25519 key")
    if address_of(key) != document["address"]:
        raise WalletError(f"{path}: the address does not match the private key")
    return Wallet(path, key)


def member_address(data_dir: str) -> str:
    """The address of a member's own wallet in ``data_dir``, made on first use.

    A new wallet is unencrypted (the member runs unattended) and mode 0600.
    An existing unencrypted one is checked in full.
    """
    path = os.path.join(data_dir, MEMBER_WALLET)
    if not os.path.lexists(path):
        try:
            return create_wallet(path, make_directory=True).address
        except WalletError:
            if not os.path.lexists(path):  # not a race with another process
                raise
    document = read_wallet_file(path)
    if document["encrypted"]:
        return document["address"]
    return load_wallet(path).address
