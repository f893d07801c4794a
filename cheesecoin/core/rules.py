"""The validity rules of section 3 (docs/protocol.md sections 3 and 5.1), pure.

- ``check_header``: a header alone (shape, bits range, smell, proof of work);
- ``check_context_free``: a cheese alone (rules 1 and 5, the context-free
  part of 6, signatures aside);
- ``check_link``: a cheese or a header against its parent (rules 2 to 4);
- ``next_bits``: the difficulty rule, the bits of a parent's child.

The stack (``cheesecoin.core.stack``) calls them with what they need: the
network, the parent ``Node``, a way to find an ancestor, the time.

Every path that takes a header from a peer (``HEADERS`` in a headers-first
sync, ``ANNOUNCE_COMPACT``, and later ``ANNOUNCE_HEADER``/``COMPACT``) checks it
here before anything else is done with it: its shape, its ``bits`` within
what the network allows (no less than the Blue Cheese's, at most 160: the
clamp of ``next_bits`` in section 3, so a header below the network's
minimum is refused before its parent is known), and its smell and proof of
work (rule 5). What needs the parent (rules 2 to 4, ``bits`` equal to
``next_bits``) is ``check_link``. Pure: no Twisted.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from cheesecoin.core.cheese import (
    HEADER_FIELDS,
    MAX_NONCE,
    Network,
    check_header_format,
    check_member_info,
    check_smell,
    meets_pow,
    preimage_prefix,
    sha1_hex,
)
from cheesecoin.core.errors import BadMessage, InvalidCheese, ProtocolError
from cheesecoin.core.formats import MAX_INT, SMELL_RE
from cheesecoin.core.tree import Node
from cheesecoin.core.tx import is_int

FUTURE_LIMIT = 120  # seconds a timestamp may be ahead of local time (rule 4)

# ancestor(node, height): the ancestor of ``node`` at ``height`` (height <= node.height)
AncestorLookup = Callable[[Node, int], Node]

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


def check_context_free(cheese: Any, network: Network, ihash: Optional[str] = None) -> str:
    """Rules 1 and 5 and the context-free part of 6, signatures aside. Returns
    info_hash (``ihash`` when the caller has already checked the body's hash),
    "" for this network's Blue Cheese."""
    check_header_format(cheese)
    if cheese["sequence_number"] == 0:
        if cheese["smell"] == network.smell:
            return ""
        raise InvalidCheese(
            "sequence_number",
            "a cheese with sequence_number 0 must be this network's Blue Cheese",
        )
    check_member_info(cheese["unit_of_information"], network.max_transactions)
    if cheese["bits"] < network.bits:
        raise InvalidCheese(
            "bits", f"bits {cheese['bits']} is below the network's lowest, {network.bits}"
        )
    return check_smell(cheese, ihash)


def next_bits(network: Network, parent: Node, ancestor: AncestorLookup) -> int:
    """The bits of a child of ``parent`` (the difficulty rule)."""
    interval = network.retarget_interval
    n = parent.height + 1
    if interval == 0 or n % interval != 0:
        return parent.bits
    actual = max(1, parent.timestamp - ancestor(parent, n - interval).timestamp)
    expected = network.target_spacing * (interval - 1)
    up = max([k for k in range(5) if actual * 2**k <= expected], default=0)
    down = max([k for k in range(5) if actual >= expected * 2**k], default=0)
    return min(160, max(network.bits, parent.bits + up - down))


def check_link(
    cheese: dict, parent: Node, network: Network, ancestor: AncestorLookup, now: float
) -> None:
    """Rules 2 to 4 of section 3 (sequence, bits, timestamps) for a cheese or a
    header against its ``parent``; ``now`` is the local time (rule 4)."""
    if parent.invalid:
        raise InvalidCheese("bad-parent", f"the parent {parent.smell} is invalid")
    if cheese["sequence_number"] != parent.height + 1:
        raise InvalidCheese(
            "sequence_number",
            f"sequence_number is {cheese['sequence_number']}, expected {parent.height + 1}",
        )
    bits = next_bits(network, parent, ancestor)
    if cheese["bits"] != bits:
        raise InvalidCheese("bits", f"bits is {cheese['bits']}, next_bits of the parent is {bits}")
    if cheese["timestamp"] < parent.timestamp:
        raise InvalidCheese(
            "timestamp",
            f"timestamp {cheese['timestamp']} is before the parent's {parent.timestamp}",
        )
    if cheese["timestamp"] > now + FUTURE_LIMIT:
        raise InvalidCheese(
            "timestamp-future",
            f"timestamp {cheese['timestamp']} is more than {FUTURE_LIMIT} s in the future",
        )
