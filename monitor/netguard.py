"""Which addresses monitor may never connect to unless the operator opts in (G2).

One rule for feeds and webhooks alike: private, loopback, link-local (the
cloud metadata address 169.254.169.254), CGNAT 100.64/10, multicast,
unspecified and reserved addresses, IPv4-mapped IPv6 included. The callers
check every resolved address and then connect to the checked one.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CGNAT = ipaddress.ip_network("100.64.0.0/10")


def is_forbidden_address(address: str | IPAddress) -> bool:
    """True for an address outgoing requests may not reach without an opt-in."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone id
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in CGNAT)
    )
