"""Sink keys beyond name/type/url (issue #4): signing secrets, retry schedule, timeout,
digest cron and time zone, rate limit, and the SSRF check of the URL.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import zoneinfo
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger

from monitor.config.checker import (
    _Checker,
)
from monitor.config.model import (
    SinkConfig,
)
from monitor.units import parse_duration

# --- sink delivery keys (issue #4) -------------------------------------------------

_SINK_DELIVERY_KEYS = {
    "retry": False, "timeout": False, "digest": False, "timezone": False,
    "min_interval": False, "allow_private_networks": False,
}  # fmt: skip


def _sink_delivery(
    c: _Checker, raw: dict[str, Any], place: str, sink: SinkConfig, private_ok: bool
) -> SinkConfig:
    """Secrets, retry schedule, timeout, digest, rate limit and the SSRF check of one sink."""
    secrets = _secrets(c, raw.get("secret"), f"{place}.secret", sink.type)
    retry = None
    if raw.get("retry") is not None:
        retry = tuple(
            c.convert(v, f"{place}.retry[{i}]", parse_duration, timedelta(seconds=5))
            for i, v in enumerate(c.strings(raw["retry"], f"{place}.retry"))
        )
    timeout = c.convert(raw.get("timeout", "15s"), f"{place}.timeout", parse_duration,
                        timedelta(seconds=15))  # fmt: skip
    min_interval = None
    if raw.get("min_interval") is not None:
        min_interval = c.convert(raw["min_interval"], f"{place}.min_interval", parse_duration, None)
    digest = c.string(raw["digest"], f"{place}.digest") if raw.get("digest") else None
    timezone = c.string(raw.get("timezone", "UTC"), f"{place}.timezone")
    _check_schedule(c, place, sink.type, digest, timezone)
    if sink.url and not private_ok and _is_private_literal(sink.url):
        c.problem(f"{place}.url", "refers to a private, loopback or link-local address; set "
                  "allow_private_networks: true on the sink to allow it")  # fmt: skip
    return dataclasses.replace(
        sink, secrets=secrets, retry=retry, timeout=timeout, digest=digest, timezone=timezone,
        min_interval=min_interval, allow_private_networks=private_ok,
    )  # fmt: skip


def _secrets(c: _Checker, value: Any, place: str, kind: str) -> tuple[str, ...]:
    """``secret: X`` or ``secret: [new, old]`` (rotation). Contract 4 lets a webhook go
    unsigned (``secret: "${OPS_SECRET:-}"``), so a missing one is a logged warning, but a
    short or malformed one is an error (C6). Problems never show the secret."""
    texts = c.strings(value, place) if value is not None else ()
    texts = tuple(t for t in texts if t)
    if kind != "webhook" and texts:
        c.problem(place, f"only webhook sinks are signed; a {kind} sink takes no secret")
    if len(texts) > 2:
        c.problem(place, "at most two secrets (the new one and the old one during a rotation)")
    for i, text in enumerate(texts):
        problem = _secret_problem(text)
        if problem:
            c.problem(f"{place}[{i}]" if len(texts) > 1 else place, problem)
    return texts


def _secret_problem(text: str) -> str | None:
    if text.startswith("whsec_"):
        try:
            key = base64.b64decode(text[6:], validate=True)
        except (binascii.Error, ValueError):
            return "a whsec_ secret must be base64 after the prefix"
    else:
        key = text.encode("utf-8")
    if not 24 <= len(key) <= 64:
        return f"a secret must be 24–64 bytes, this one is {len(key)}"
    return None


def _check_schedule(c: _Checker, place: str, kind: str, digest: str | None, tz: str) -> None:
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        c.problem(f"{place}.timezone", f"unknown time zone {tz!r}")
        zone = None
    if digest is None:
        return
    if kind == "webhook":
        c.problem(f"{place}.digest", "webhook sinks send one hit per request (contract 4); "
                  "use digest on slack, discord or console sinks")  # fmt: skip
    try:
        CronTrigger.from_crontab(digest, timezone=zone or "UTC")
    except ValueError as e:
        c.problem(f"{place}.digest", f"not a cron expression ({e})")


def _is_private_literal(url: str) -> bool:
    """At load we can only judge IP literals and localhost; names are checked at connect."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None) or address
    return bool(
        mapped.is_private or mapped.is_loopback or mapped.is_link_local or mapped.is_unspecified
        or mapped.is_multicast or mapped.is_reserved
        or mapped in ipaddress.ip_network("100.64.0.0/10")
    )  # fmt: skip
