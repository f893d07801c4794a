"""IP addresses: loopback, and the canonical text form (pure, no Twisted)."""

from __future__ import annotations

import ipaddress
import re
from typing import Optional, Tuple

# A member's or tracker's listening address: (host, port). Defined here once.
Address = Tuple[str, int]


def is_loopback(host: Optional[str]) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses."""
    try:
        ip = ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def canonical_ip(text: str) -> Optional[str]:
    """``text`` as an IP address in its canonical form (an IPv4-mapped IPv6
    address as the IPv4 one), or None if it is not an IP address."""
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def listable_host(text: str) -> Optional[str]:
    """``text`` as we keep a member's host in the address book: an IP address in
    its canonical text form, or a host name (letters, digits and hyphens in dot-
    separated labels, its last label not a number) lowercased; None for anything
    else, above all the other spellings of an IP address that the resolver still
    accepts (``127.1``, ``0x7f.1``, ``2130706433``, ``1.2.3.0004``): one address
    written many ways would count as many addresses."""
    if canonical_ip(text) is not None:
        return text if canonical_ip(text) == text else None
    name = text.lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        return None  # a number the resolver would read as an IP address
    return name
