"""The one check of a header alone (docs/protocol.md sections 3 and 5.1).

Every path that takes a header from a peer (``HEADERS`` in a headers-first
sync, ``ANNOUNCE_COMPACT``, and later ``ANNOUNCE_HEADER``/``COMPACT``) checks it
here before anything else is done with it: its shape, its ``bits`` within
what the network allows (no less than the Blue Cheese's, at most 160: the
clamp of ``next_bits`` in section 3, so a header below the network's
minimum is refused before its parent is known), and its smell and proof of
work (rule 5). What needs the parent (rules 2 to 4, ``bits`` equal to
``next_bits``) is ``CheeseStack.check_link``. Pure: no Twisted.
"""

from __future__ import annotations

from typing import Any

from cheesecoin.core.cheese import (
    HEADER_FIELDS,
    MAX_INT,
    MAX_NONCE,
    Network,
    meets_pow,
    preimage_prefix,
    sha1_hex,
)
from cheesecoin.core.errors import BadMessage, ProtocolError
from cheesecoin.core.formats import SMELL_RE
from cheesecoin.core.tx import is_int

_RANGES = {"sequence_number": MAX_INT, "timestamp": MAX_INT, "nonce": MAX_NONCE}


def check_header(header: Any, network: Network) -> dict:
    """A header's shape, bits within the network's range, smell and proof of
    work (rule 5); returns it, else raises BadMessage (shape) or
    ProtocolError ``invalid-cheese`` (bits, smell, proof of work)."""
    if not isinstance(header, dict) or set(header) != set(HEADER_FIELDS):
        raise BadMessage("field 'header' must have exactly " + ", ".join(HEADER_FIELDS))
    for key in ("parent_smell", "info_hash", "smell"):
        if not isinstance(header[key], str) or not SMELL_RE.match(header[key]):
            raise BadMessage(f"header field '{key}' must be 40 lowercase hex characters")
    for key, most in _RANGES.items():
        if not is_int(header[key], 0, most):
            raise BadMessage(f"header field '{key}' must be a whole number in 0..{most}")
    bits = header["bits"]
    if not is_int(bits, network.bits, 160):
        raise ProtocolError(
            "invalid-cheese",
            f"rule 3 (bits): bits {str(bits)[:20]} is outside the network's {network.bits}..160",
        )
    prefix = preimage_prefix(
        header["parent_smell"],
        header["sequence_number"],
        header["timestamp"],
        bits,
        header["info_hash"],
    )
    if sha1_hex((prefix + str(header["nonce"])).encode("ascii")) != header["smell"]:
        raise ProtocolError(
            "invalid-cheese", "rule 5 (smell): the header's smell is not the SHA1 of its preimage"
        )
    if not meets_pow(header["smell"], bits):
        raise ProtocolError(
            "invalid-cheese", "rule 5 (smell): the header's smell does not meet its bits"
        )
    return header
