"""The member's identity key (docs/protocol.md section 5.3): ``identity.key`` in its data directory.

An Ed25519 key pair whose public key, 64 lowercase hex characters, is the
member's ``node_id`` whenever it lists the feature ``tls``. It is created at
the first start (PKCS#8 PEM, mode 0600, written to a temporary file and
hard-linked into place, so the file is never seen half written and an
existing one is never replaced) and loaded at every start. A file that is
there but cannot be read as an Ed25519 key is an ``IdentityError`` naming the
file: the member stops rather than make a new key, since a new key is a new
identity and every member that pinned the old one would refuse it.
"""

from __future__ import annotations

import os

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cheesecoin.storage.wallet import _write_new_file

IDENTITY_FILE = "identity.key"
MAX_KEY_FILE_BYTES = 64 * 1024  # an identity.key: one PEM Ed25519 key, about 120 bytes


class IdentityError(Exception):
    """The identity key file exists but is not usable (the message names it)."""


def identity_path(data_dir: str) -> str:
    return os.path.join(data_dir, IDENTITY_FILE)


def node_id_of(key: Ed25519PrivateKey) -> str:
    """The node_id of an identity key: its raw public key in lowercase hex."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def read_identity(path: str) -> Ed25519PrivateKey:
    """The key in ``path``; IdentityError (naming the file) if it is not an Ed25519 key."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise IdentityError(f"cannot read the identity key {path}: {e.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise IdentityError(
            f"the identity key {path} is damaged: larger than {MAX_KEY_FILE_BYTES} bytes"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise IdentityError(
            f"the identity key {path} is damaged (not a PEM Ed25519 private key); "
            "move it away to start with a new identity"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"the identity key {path} is not an Ed25519 key")
    return key


def load_or_create_identity(data_dir: str) -> Ed25519PrivateKey:
    """The member's identity key: read from the data directory, or created there
    at the first start. Raises IdentityError (a damaged file, never replaced)."""
    path = identity_path(data_dir)
    if os.path.lexists(path):
        return read_identity(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        os.makedirs(data_dir, exist_ok=True)
        _write_new_file(path, pem)
    except FileExistsError:  # another start made it meanwhile: that one is the identity
        return read_identity(path)
    except OSError as e:
        raise IdentityError(f"cannot write the identity key {path}: {e.strerror}") from None
    return key
