"""IP addresses: loopback, and the canonical text form (pure, no Twisted)."""

from __future__ import annotations

import ipaddress
from typing import Optional


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
