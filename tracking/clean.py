"""What a request says of its client, cleaned to what may be stored with a hit: its address a
valid IP (or empty), anonymized if asked, and its user agent cut to a sane length."""

from __future__ import annotations

import functools
import ipaddress

# What a browser or proxy may send is longer than anything worth storing.
MAX_USER_AGENT = 1000


@functools.lru_cache(maxsize=4096)  # readers come back, and parsing is most of the cost
def valid_ip(ip: str) -> str:
    """The address in its canonical form, or "" for anything else (a hostname, a port, junk)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))  # a zone is local to the proxy
    return str(address)


@functools.lru_cache(maxsize=4096)
def anonymize_ip(ip: str) -> str:
    """IPv4 without its last octet, IPv6 without its last 80 bits."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
