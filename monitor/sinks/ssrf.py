"""The SSRF guard for outgoing webhooks (G2, C5): refuse private destinations.

A webhook URL comes from config, but its host name resolves at send time, so
the check runs twice: on literal IPs when the sink is built, and on every
resolved address right before connecting. The request then goes to the
*checked* address (Host header and TLS SNI keep the name), so a DNS answer
that changes between check and connect (rebinding) cannot redirect it
(miniflux#4090; vladkesler/initrunner#140 pins the IP the same way).

Kept small and self-contained here; the feed fetcher has its own guard in
``monitor.sources`` until the two are unified.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor.netguard import IPAddress, is_forbidden_address


class ForbiddenAddress(ValueError):
    """The destination resolves to an address outgoing alerts may not reach."""


class UnresolvedHost(OSError):
    """The name did not resolve (maybe for now): a network error, retried like one."""


def literal_address(url: str) -> IPAddress | None:
    """The URL's host if it is an IP literal, else None."""
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class PinnedTarget:
    """Where to connect: the checked ``address``, while ``host`` stays in Host and SNI."""

    host: str
    address: str
    url: str  # the URL with the host replaced by the address


def pin(url: str, *, allow_private: bool) -> PinnedTarget:
    """Resolve ``url``'s host, check every address, and return the first one to connect to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UnresolvedHost(f"cannot resolve {host!r}: {e.strerror or e}") from e
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise UnresolvedHost(f"{host!r} has no address")
    if not allow_private:
        bad = [a for a in addresses if is_forbidden_address(a)]
        if bad:
            raise ForbiddenAddress(f"{host!r} resolves to a private address ({bad[0]})")
    chosen = addresses[0]
    shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    return PinnedTarget(host=host, address=str(chosen), url=parts._replace(netloc=netloc).geturl())
