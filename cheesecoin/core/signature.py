"""When an Ed25519 signature verifies: the one rule of docs/protocol.md section 4.

Pure Python, no Twisted. Every path that checks a signature comes here (the
mempool, a cheese's validation, the sync's workers, ``cheesecoin verify``,
the wallet, the simulator's shared cache), so members cannot disagree.

The rule is RFC 8032 verification with the choices of libsodium's
``crypto_sign_verify_detached``: S < L; A canonical, on the curve and not of
small order; R not of small order; the cofactorless equation compared byte
for byte. The equation is libsodium's own (``crypto_sign_open`` through
PyNaCl, which runs ``crypto_sign_verify_detached``; about twice as fast as
OpenSSL here). The cheap clauses (S, the small-order and canonical encodings) are
also checked here first, explicitly: they do not then depend on how the
libsodium in use was built, and a refusal can say which clause failed
(``signature_fault``). Signing stays with ``cryptography``: Ed25519 signing
is deterministic, so its signatures are the same bytes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Sequence, Set, Tuple

# PyNaCl's cffi binding of libsodium, called directly: nacl.bindings.crypto_sign_open
# wraps the same call with a copy of the message out and an exception on failure,
# 2-4% of a verification here.
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _sodium

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P  # the curve: -x^2 + y^2 = 1 + d x^2 y^2
# The y of two points of order 8 (P - _Y8 is the other y)
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
# The y coordinates of the eight points of small order (order 1, 2, 4 and 8).
SMALL_ORDER_Y = frozenset({1, P - 1, 0, _Y8, P - _Y8})
_LOW_255 = (1 << 255) - 1


def _encodings(ys: Sequence[int]) -> frozenset:
    """Every 32-byte encoding of these y values, with either sign bit of x."""
    low = [y.to_bytes(32, "little") for y in ys]
    return frozenset(low + [e[:31] + bytes([e[31] | 0x80]) for e in low])


# Every encoding of a point of small order, canonical (y < p) or not (y = p, p + 1:
# 0 and 1 again): what libsodium's ge25519_has_small_order refuses.
SMALL_ORDER_ENCODINGS = _encodings(sorted(SMALL_ORDER_Y) + [P, P + 1])

KEY_NOT_CANONICAL = "the key (from) is not a canonical point encoding (its y is not below p)"
KEY_SMALL_ORDER = "the key (from) is a point of small order: such a key signs any message"
KEY_NOT_ON_CURVE = "the key (from) is not a point of the curve"
S_NOT_REDUCED = "S is not below L"
R_SMALL_ORDER = "R is a point of small order"
EQUATION = "[S]B - [k]A does not encode R (a signature of other bytes, or by another key)"
NOT_HEX = "the key or the signature is not hex of the right length"


def key_fault(address: str) -> Optional[str]:
    """Why ``address`` (64 hex characters) can never sign under the rule, or None.

    A wallet refuses to pay such an address: no signature from it verifies,
    so coins sent there could never move again."""
    try:
        raw = bytes.fromhex(address)
    except (TypeError, ValueError):
        return NOT_HEX
    if len(raw) != 32:
        return NOT_HEX
    return _cheap_key_fault(raw) or (None if _on_curve(raw) else KEY_NOT_ON_CURVE)


def _cheap_key_fault(raw: bytes) -> Optional[str]:
    if int.from_bytes(raw, "little") & _LOW_255 >= P:
        return KEY_NOT_CANONICAL
    if raw in SMALL_ORDER_ENCODINGS:
        return KEY_SMALL_ORDER
    return None


def _on_curve(raw: bytes) -> bool:
    """Whether a canonical encoding decodes to a point: x^2 = (y^2 - 1) / (d y^2 + 1) has a root."""
    y = int.from_bytes(raw, "little") & _LOW_255
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return not raw[31] & 0x80  # x = 0 has no negative form
    return pow(x2, (P - 1) // 2, P) == 1


@lru_cache(maxsize=8192)
def _key(address: str) -> Optional[bytes]:
    """The raw key of an address that passes the cheap key clauses, else None (cached:
    the same senders recur)."""
    try:
        raw = bytes.fromhex(address)
    except (TypeError, ValueError):
        return None
    if len(raw) != 32 or _cheap_key_fault(raw) is not None:
        return None
    return raw


def _signature(signature_hex: str) -> Optional[bytes]:
    """The raw signature if it passes the cheap clauses (S < L, R not of small order)."""
    try:
        sig = bytes.fromhex(signature_hex)
    except (TypeError, ValueError):
        return None
    if len(sig) != 64 or int.from_bytes(sig[32:], "little") >= L:
        return None
    return None if sig[:32] in SMALL_ORDER_ENCODINGS else sig


def _verify(address: str, signature_hex: str, message: bytes) -> bool:
    key = _key(address)
    sig = _signature(signature_hex) if key is not None else None
    if sig is None:
        return False
    signed = sig + message
    size = len(signed)
    out = _ffi.new("unsigned char[]", size)  # where libsodium puts the message back
    return _sodium.crypto_sign_open(out, _ffi.NULL, signed, size, key) == 0


def signature_fault(address: str, signature_hex: str, message: bytes) -> Optional[str]:
    """None if the signature verifies under the rule (``verify``), else the clause it breaks."""
    if verify(address, signature_hex, message):
        return None
    fault = key_fault(address)
    if fault is not None:
        return fault
    try:
        sig = bytes.fromhex(signature_hex)
    except (TypeError, ValueError):
        return NOT_HEX
    if len(sig) != 64:
        return NOT_HEX
    if int.from_bytes(sig[32:], "little") >= L:
        return S_NOT_REDUCED
    if sig[:32] in SMALL_ORDER_ENCODINGS:
        return R_SMALL_ORDER
    return EQUATION


class SignatureCache:
    """Signatures already checked good in this process, keyed by the whole
    (address, signature, signed bytes): for the simulator, where a thousand
    members in one process would each check the same signature. A real
    member never installs one (``use_signature_cache``). Only good verdicts
    are kept, and only ones this module reached, so the cache cannot make a
    signature pass that the rule refuses."""

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.good: Set[Tuple[str, str, bytes]] = set()
        self.max_entries = max_entries
        self.hits = 0
        self.checks = 0


_signature_cache: Optional[SignatureCache] = None


def use_signature_cache(cache: Optional[SignatureCache]) -> Optional[SignatureCache]:
    """Install ``cache`` (None: none) for every check in this process; returns the previous one."""
    global _signature_cache
    previous, _signature_cache = _signature_cache, cache
    return previous


def verify(address: str, signature_hex: str, message: bytes) -> bool:
    """Whether ``signature_hex`` by ``address`` over ``message`` verifies under the rule."""
    cache = _signature_cache
    if cache is None:
        return _verify(address, signature_hex, message)
    key_of = (address, signature_hex, message)
    if key_of in cache.good:
        cache.hits += 1
        return True
    cache.checks += 1
    if not _verify(address, signature_hex, message):
        return False
    if len(cache.good) >= cache.max_entries:
        cache.good.clear()
    cache.good.add(key_of)
    return True


def verify_batch(items: Sequence[Tuple[str, str, bytes]]) -> List[int]:
    """Indices of the (address, signature_hex, message) items that fail: the one
    batch check (``cheesecoin verify``'s worker processes, a sync's workers)."""
    if _signature_cache is not None:
        return [i for i, (a, s, m) in enumerate(items) if not verify(a, s, m)]
    return [i for i, (a, s, m) in enumerate(items) if not _verify(a, s, m)]
