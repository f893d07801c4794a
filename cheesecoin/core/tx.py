"""Transactions: format, signing, verification and txids (docs/protocol.md s.4).

Pure Python, no Twisted. Signatures are checked by ``core.signature`` (the
exact rule of section 4, through libsodium) and made with ``cryptography``
(Ed25519 signing is deterministic: the same bytes either way).
"""

from __future__ import annotations

import hashlib
import json
import re
from json.encoder import encode_basestring as _quote  # json.dumps(str, ensure_ascii=False), in C
from operator import itemgetter
from typing import Any, List, Optional, Set, Tuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cheesecoin.core.formats import ADDRESS_RE, MAX_INT
from cheesecoin.core.signature import (  # noqa: F401 (callers' names)
    SignatureCache,
    signature_fault,
    use_signature_cache,
    verify_batch,
)
from cheesecoin.core.signature import verify as verify_raw

TX_FIELDS = frozenset(["from", "to", "amount", "fee", "nonce", "memo", "signature"])
MAX_MEMO = 140
MAX_VALUE = MAX_INT  # amounts and fees: any protocol integer (the name cli.wallet uses)
_SIG_RE = re.compile(r"[0-9a-f]{128}\Z")


def is_int(value: Any, lo: int, hi: int) -> bool:
    """An int (not a bool) in lo..hi."""
    return type(value) is int and lo <= value <= hi


def is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_tx_format(tx: Any) -> Optional[Tuple[str, str]]:
    """None if ``tx`` is well formed, else (rule, message). Also checks from != to."""
    if type(tx) is not dict or tx.keys() != TX_FIELDS:
        return (
            "tx-fields",
            "a transaction must have exactly from, to, amount, fee, nonce, memo, signature",
        )
    sender, to, sig, memo = tx["from"], tx["to"], tx["signature"], tx["memo"]
    if type(sender) is not str or not ADDRESS_RE.match(sender):
        return ("tx-fields", "'from' must be an address (64 lowercase hex characters)")
    if type(to) is not str or not ADDRESS_RE.match(to):
        return ("tx-fields", "'to' must be an address (64 lowercase hex characters)")
    if not is_int(tx["amount"], 1, MAX_INT):
        return ("tx-fields", "'amount' must be an integer in 1..2^63-1")
    if not is_int(tx["fee"], 0, MAX_INT):
        return ("tx-fields", "'fee' must be an integer in 0..2^63-1")
    if not is_int(tx["nonce"], 0, MAX_INT):
        return ("tx-fields", "'nonce' must be an integer in 0..2^63-1")
    if type(memo) is not str or len(memo) > MAX_MEMO:
        return ("tx-fields", f"'memo' must be a string of at most {MAX_MEMO} characters")
    if not is_unicode(memo):
        return ("tx-fields", "'memo' must be valid text (it holds a lone surrogate)")
    if type(sig) is not str or not _SIG_RE.match(sig):
        return ("tx-fields", "'signature' must be 128 lowercase hex characters")
    if sender == to:
        return ("tx-self", "a transaction cannot pay its own sender")
    return None


def fast_shape(tx: Any, keys: frozenset = TX_FIELDS) -> bool:
    """True when ``tx`` has exactly ``keys`` with plain str/int values (so its
    canonical text can be built directly)."""
    return (
        type(tx) is dict
        and tx.keys() == keys
        and type(tx["from"]) is str
        and type(tx["to"]) is str
        and type(tx["memo"]) is str
        and type(tx["amount"]) is int
        and type(tx["fee"]) is int
        and type(tx["nonce"]) is int
        and (type(tx.get("signature", "")) is str)
    )


def _fast_text(tx: dict, with_signature: bool) -> str:
    signature = ',"signature":' + _quote(tx["signature"]) if with_signature else ""
    return '{"amount":%d,"fee":%d,"from":%s,"memo":%s,"nonce":%d%s,"to":%s}' % (
        tx["amount"],
        tx["fee"],
        _quote(tx["from"]),
        _quote(tx["memo"]),
        tx["nonce"],
        signature,
        _quote(tx["to"]),
    )


# the fields in canonical (sorted) order
_get_fields = itemgetter("amount", "fee", "from", "memo", "nonce", "signature", "to")


def tx_texts(tx: dict) -> Tuple[str, bytes]:
    """(canonical(tx), canonical(tx without "signature") in UTF-8) of a transaction of
    the plain shape (``fast_shape``, signature included), built at once: what a
    body check needs for its info_hash and its signature, from one formatting."""
    amount, fee, sender, memo, nonce, sig, to = _get_fields(tx)
    head = '{"amount":%d,"fee":%d,"from":%s,"memo":%s,"nonce":%d' % (
        amount,
        fee,
        _quote(sender),
        _quote(memo),
        nonce,
    )
    tail = ',"to":' + _quote(to) + "}"
    return head + ',"signature":' + _quote(sig) + tail, (head + tail).encode("utf-8")


def canonical_text(value: Any) -> str:
    """The canonical JSON text that is hashed and signed: sorted keys, no spaces,
    not ASCII-escaped."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tx_canonical_text(tx: Any) -> str:
    """canonical(tx) as text; built directly for a well-shaped transaction."""
    return _fast_text(tx, True) if fast_shape(tx) else canonical_text(tx)


_UNSIGNED_FIELDS = TX_FIELDS - {"signature"}


def signing_bytes(tx: dict) -> bytes:
    """canonical(tx without "signature"): the bytes that are signed."""
    if fast_shape(tx) or fast_shape(tx, _UNSIGNED_FIELDS):
        return _fast_text(tx, False).encode("utf-8")
    return canonical_text({k: v for k, v in tx.items() if k != "signature"}).encode("utf-8")


def txid(tx: dict) -> str:
    """SHA1 of canonical(tx), signature included, hex."""
    return hashlib.sha1(tx_canonical_text(tx).encode("utf-8")).hexdigest()


def verify_signature(tx: dict) -> bool:
    """True if the (well-formed) transaction's signature verifies (``core.signature``'s rule)."""
    return verify_raw(tx["from"], tx["signature"], signing_bytes(tx))


def tx_signature_fault(tx: dict) -> Optional[str]:
    """None if the (well-formed) transaction's signature verifies, else the clause it breaks."""
    return signature_fault(tx["from"], tx["signature"], signing_bytes(tx))


def signature_items(txs: Any) -> Optional[list]:
    """The (address, signature_hex, message) items of a list of transactions for
    ``verify_batch``, or None if one of them is not of the plain shape (the
    stack then finds its exact fault itself)."""
    if not isinstance(txs, list) or not all(fast_shape(tx) for tx in txs):
        return None
    try:
        return [(tx["from"], tx["signature"], tx_texts(tx)[1]) for tx in txs]
    except (UnicodeEncodeError, ValueError):  # a lone surrogate: malformed
        return None


def signed_cheeses(cheeses: list, offset: int = 0) -> Set[int]:
    """Indices (plus ``offset``) of the cheeses whose transactions are all well
    formed and correctly signed (``verify_batch``). Pure; a sync runs it in
    worker threads. The stack checks every other rule of those cheeses, and
    everything of the others."""
    items: list = []
    owners: List[int] = []
    candidates = set()
    for i, cheese in enumerate(cheeses):
        info = cheese.get("unit_of_information") if isinstance(cheese, dict) else None
        found = signature_items(info.get("transactions") if isinstance(info, dict) else None)
        if found is None:
            continue
        candidates.add(i)
        items.extend(found)
        owners.extend([i] * len(found))
    bad = {owners[j] for j in verify_batch(items)}
    return {i + offset for i in candidates - bad}


# -- keys ---------------------------------------------------------------------


def address_of(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes_raw().hex()


def sign_tx(
    private_key: Ed25519PrivateKey, to: str, amount: int, fee: int, nonce: int, memo: str = ""
) -> dict:
    """A signed transaction from the key's address."""
    tx = {
        "from": address_of(private_key),
        "to": to,
        "amount": amount,
        "fee": fee,
        "nonce": nonce,
        "memo": memo,
    }
    tx["signature"] = private_key.sign(signing_bytes(tx)).hex()
    return tx
