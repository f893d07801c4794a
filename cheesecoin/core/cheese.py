"""Cheeses (blocks), smells (hashes), proof of work and networks.

Pure Python, no Twisted: docs/protocol.md section 3. A cheese is a plain dict
with exactly seven fields; this module checks its shape (rule 1), computes
its smell (rule 5) and reads the network parameters from a Blue Cheese.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote
from typing import Any, Dict, List, Optional

from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.formats import ADDRESS_RE, MAX_INT, SMELL_RE
from cheesecoin.core.pow import search_nonce
from cheesecoin.core.tx import (
    canonical_text,
    check_tx_format,
    is_int,
    is_unicode,
    tx_canonical_text,
    txid,
)

CHEESE_FIELDS = frozenset(
    [
        "parent_smell",
        "sequence_number",
        "timestamp",
        "bits",
        "unit_of_information",
        "nonce",
        "smell",
    ]
)
NULL_SMELL = "0" * 40
MAX_NONCE = 2**64 - 1
MAX_NOTE = 256
DEFAULT_NETWORK_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "data",
    "blue-cheese-cheesecoin.json",
)


def canonical(value: Any) -> bytes:
    """The canonical JSON encoding that is hashed and signed (UTF-8 bytes)."""
    return canonical_text(value).encode("utf-8")


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def info_canonical(info: dict) -> bytes:
    """canonical(unit_of_information), fast for well-formed member cheeses.

    A member cheese's transactions have a fixed shape once checked, so their
    canonical text is built directly; anything else falls back to json.dumps.
    """
    if (
        isinstance(info.get("miner"), str)
        and isinstance(info.get("transactions"), list)
        and isinstance(info.get("note", ""), str)
        and set(info) <= {"miner", "transactions", "note"}
    ):
        parts = [tx_canonical_text(tx) for tx in info["transactions"]]
        head = '{"miner":' + _quote(info["miner"])
        if "note" in info:
            head += ',"note":' + _quote(info["note"])
        return (head + ',"transactions":[' + ",".join(parts) + "]}").encode("utf-8")
    return canonical(info)


def info_hash(info: dict) -> str:
    """SHA1 of canonical(unit_of_information), hex."""
    return sha1_hex(info_canonical(info))


def preimage_prefix(
    parent_smell: str, sequence_number: int, timestamp: int, bits: int, ihash: str
) -> str:
    """The smell preimage up to and including its last ':' (the miner appends the nonce)."""
    return f"{parent_smell}:{sequence_number}:{timestamp}:{bits}:{ihash}:"


def preimage(cheese: dict, ihash: Optional[str] = None) -> str:
    if ihash is None:
        ihash = info_hash(cheese["unit_of_information"])
    return preimage_prefix(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        cheese["bits"],
        ihash,
    ) + str(cheese["nonce"])


def compute_smell(cheese: dict, ihash: Optional[str] = None) -> str:
    return sha1_hex(preimage(cheese, ihash).encode("ascii"))


def meets_pow(smell: str, bits: int) -> bool:
    """True when the smell, as a 160-bit integer, is below 2^(160 - bits).
    False for bits outside 0..160 (no smell meets them; never a negative shift)."""
    if not 0 <= bits <= 160:
        return False
    return int(smell, 16) >> (160 - bits) == 0


def work_of(bits: int) -> int:
    return 1 << bits


def check_header_format(cheese: Any) -> None:
    """Rule 1 for the seven fields (not the unit_of_information)."""
    if not isinstance(cheese, dict):
        raise InvalidCheese("fields", "a cheese must be a JSON object")
    keys = set(cheese)
    if keys != CHEESE_FIELDS:
        missing = sorted(CHEESE_FIELDS - keys)
        extra = sorted(map(str, keys - CHEESE_FIELDS))
        raise InvalidCheese("fields", f"fields missing {missing} or unexpected {extra}"[:200])
    for key in ("parent_smell", "smell"):
        value = cheese[key]
        if not isinstance(value, str) or not SMELL_RE.match(value):
            raise InvalidCheese("fields", f"{key} must be 40 lowercase hex characters")
    if not is_int(cheese["sequence_number"], 0, MAX_INT):
        raise InvalidCheese("fields", "sequence_number must be an integer in 0..2^63-1")
    if not is_int(cheese["timestamp"], 0, MAX_INT):
        raise InvalidCheese("fields", "timestamp must be an integer in 0..2^63-1")
    if not is_int(cheese["bits"], 1, 160):
        raise InvalidCheese("fields", "bits must be an integer in 1..160")
    if not is_int(cheese["nonce"], 0, MAX_NONCE):
        raise InvalidCheese("fields", "nonce must be an integer in 0..2^64-1")
    if not isinstance(cheese["unit_of_information"], dict):
        raise InvalidCheese("fields", "unit_of_information must be an object")


def check_member_info(info: dict, max_transactions: Optional[int] = None) -> None:
    """Rule 1 and the context-free part of rule 6 for a non-Blue cheese's info."""
    extra = set(info) - {"miner", "transactions", "note"}
    if extra:
        raise InvalidCheese(
            "info-keys", f"unknown keys in unit_of_information: {sorted(map(str, extra))}"[:200]
        )
    if "miner" not in info or "transactions" not in info:
        raise InvalidCheese("info-keys", "unit_of_information needs 'miner' and 'transactions'")
    if "note" in info:
        note = info["note"]
        if not isinstance(note, str) or len(note) > MAX_NOTE or not is_unicode(note):
            raise InvalidCheese("note", f"note must be a string of at most {MAX_NOTE} characters")
    txs = info["transactions"]
    if not isinstance(txs, list):
        raise InvalidCheese("fields", "transactions must be a list")
    miner = info["miner"]
    if not isinstance(miner, str) or not ADDRESS_RE.match(miner):
        raise InvalidCheese(
            "miner-address", "miner must be an address (64 lowercase hex characters)"
        )
    if max_transactions is not None and len(txs) > max_transactions:
        raise InvalidCheese("max-transactions", f"more than {max_transactions} transactions")
    for i, tx in enumerate(txs):
        rule = check_tx_format(tx)
        if rule is not None:
            raise InvalidCheese(rule[0], f"transaction {i}: {rule[1]}")


def check_smell(cheese: dict, ihash: Optional[str] = None) -> str:
    """Rule 5: the smell is right and meets the proof of work. Returns info_hash."""
    try:
        if ihash is None:
            ihash = info_hash(cheese["unit_of_information"])
        smell = compute_smell(cheese, ihash)
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        raise InvalidCheese(
            "fields", "the cheese holds a value that cannot be hashed (a lone surrogate?)"
        )
    if smell != cheese["smell"]:
        raise InvalidCheese("smell", f"smell is {smell}, not {cheese['smell']}")
    if not meets_pow(smell, cheese["bits"]):
        raise InvalidCheese(
            "proof-of-work", f"smell {smell} does not start with {cheese['bits']} zero bits"
        )
    return ihash


HEADER_FIELDS = (
    "parent_smell",
    "sequence_number",
    "timestamp",
    "bits",
    "info_hash",
    "nonce",
    "smell",
)
_HEADER_ONLY = frozenset(HEADER_FIELDS) - {"info_hash"}  # a cheese's fields but its body


def header_of(cheese: dict, ihash: Optional[str] = None) -> dict:
    """The header of a cheese (docs/protocol.md 5.1): its seven fields with
    ``unit_of_information`` replaced by its ``info_hash``."""
    if ihash is None:
        ihash = info_hash(cheese["unit_of_information"])
    return {key: (ihash if key == "info_hash" else cheese[key]) for key in HEADER_FIELDS}


_BODY_KEY = '"unit_of_information":'


def header_from_text(text: str) -> dict:
    """The header of a cheese from its canonical text (what the store keeps),
    without decoding its body: sorted keys put ``unit_of_information`` last,
    so the text after that key is canonical(body), whose SHA1 is the
    info_hash. The header's smell is checked against that info_hash (one
    SHA1 of the preimage); a text of any other shape, or one that fails
    the check, is decoded and hashed the long way."""
    at = text.find(_BODY_KEY)
    if at > 0 and text.endswith("}"):
        try:
            fields = json.loads(text[: at - 1] + "}")
        except ValueError:
            fields = None
        if isinstance(fields, dict) and fields.keys() == _HEADER_ONLY:
            ihash = sha1_hex(text[at + len(_BODY_KEY) : -1].encode("utf-8"))
            try:
                smell = compute_smell(fields, ihash)
            except (TypeError, ValueError, KeyError):
                smell = None
            if smell == fields["smell"]:
                return {
                    key: (ihash if key == "info_hash" else fields[key]) for key in HEADER_FIELDS
                }
    return header_of(json.loads(text))


def compact_announcement(
    cheese: dict, ihash: Optional[str] = None, txids: Optional[List[str]] = None
) -> dict:
    """The ANNOUNCE_COMPACT message of a (non-Blue) cheese: header, miner, txids,
    note (its info_hash and txids not computed again when given)."""
    info = cheese["unit_of_information"]
    msg = {
        "type": "ANNOUNCE_COMPACT",
        "header": header_of(cheese, ihash),
        "miner": info["miner"],
        "txids": txids if txids is not None else [txid(tx) for tx in info["transactions"]],
    }
    if "note" in info:
        msg["note"] = info["note"]
    return msg


def rebuild_cheese(
    header: dict, miner: str, transactions: List[dict], note: Optional[str] = None
) -> dict:
    """The cheese a header describes, with its body rebuilt from its parts
    (the receiving side of ANNOUNCE_COMPACT); check it with ``check_smell``."""
    info: Dict[str, Any] = {"miner": miner, "transactions": transactions}
    if note is not None:
        info["note"] = note
    cheese = {key: header[key] for key in HEADER_FIELDS if key != "info_hash"}
    cheese["unit_of_information"] = info
    return cheese


# -- networks -----------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """A network, defined by its Blue Cheese."""

    blue_cheese: Dict[str, Any]
    name: str
    note: str
    target_spacing: int
    retarget_interval: int
    reward: int
    max_transactions: int

    @property
    def smell(self) -> str:
        return self.blue_cheese["smell"]

    @property
    def bits(self) -> int:
        return self.blue_cheese["bits"]


class NetworkError(ValueError):
    """A network file or Blue Cheese that cannot be used (a clear message)."""


def network_from_blue_cheese(cheese: Any) -> Network:
    """Check a Blue Cheese and read its parameters, or raise NetworkError."""
    try:
        check_header_format(cheese)
    except InvalidCheese as e:
        raise NetworkError(f"not a Blue Cheese: {e.message}")
    if cheese["sequence_number"] != 0 or cheese["parent_smell"] != NULL_SMELL:
        raise NetworkError(
            "not a Blue Cheese: sequence_number must be 0 and parent_smell forty zeros"
        )
    info = cheese["unit_of_information"]
    if set(info) != {"network", "note", "params"}:
        raise NetworkError(
            "the Blue Cheese's unit_of_information must have exactly network, note and params"
        )
    if (
        not isinstance(info["network"], str)
        or not info["network"]
        or not isinstance(info["note"], str)
    ):
        raise NetworkError("the Blue Cheese's network and note must be strings")
    params = info["params"]
    names = ("target_spacing", "retarget_interval", "reward", "max_transactions")
    if not isinstance(params, dict) or set(params) != set(names):
        raise NetworkError(f"the Blue Cheese's params must have exactly {', '.join(names)}")
    for name in names:
        if not is_int(params[name], 0, MAX_INT):
            raise NetworkError(f"params.{name} must be an integer in 0..2^63-1")
    if params["target_spacing"] < 1 and params["retarget_interval"] != 0:
        raise NetworkError("params.target_spacing must be at least 1 when retargeting")
    if params["retarget_interval"] == 1:
        raise NetworkError("params.retarget_interval must be 0 (off) or at least 2")
    try:
        check_smell(cheese)
    except InvalidCheese as e:
        raise NetworkError(f"the Blue Cheese fails its proof of work: {e.message}")
    return Network(
        blue_cheese=cheese,
        name=info["network"],
        note=info["note"],
        target_spacing=params["target_spacing"],
        retarget_interval=params["retarget_interval"],
        reward=params["reward"],
        max_transactions=params["max_transactions"],
    )


def load_network(path: Optional[str] = None) -> Network:
    """Read a network file (a JSON Blue Cheese); the default network without a path."""
    path = path or DEFAULT_NETWORK_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        raise NetworkError(f"cannot read network file {path}: {e.strerror}")
    try:
        cheese = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise NetworkError(f"network file {path} is not JSON: {e}")
    return network_from_blue_cheese(cheese)


def mine_blue_cheese(
    name: str,
    bits: int,
    timestamp: int,
    target_spacing: int = 10,
    retarget_interval: int = 20,
    reward: int = 50,
    max_transactions: int = 1000,
    note: str = "",
) -> dict:
    """Mine a new Blue Cheese (a network file) in this thread."""
    cheese: Dict[str, Any] = {
        "parent_smell": NULL_SMELL,
        "sequence_number": 0,
        "timestamp": timestamp,
        "bits": bits,
        "unit_of_information": {
            "network": name,
            "note": note,
            "params": {
                "target_spacing": target_spacing,
                "retarget_interval": retarget_interval,
                "reward": reward,
                "max_transactions": max_transactions,
            },
        },
    }
    prefix = preimage_prefix(
        NULL_SMELL, 0, timestamp, bits, info_hash(cheese["unit_of_information"])
    )
    nonce, smell = search_nonce(prefix, bits, 0, MAX_NONCE + 1)
    cheese["nonce"] = nonce
    cheese["smell"] = smell
    return cheese
