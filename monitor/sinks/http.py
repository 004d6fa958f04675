"""One HTTP client for every outgoing alert, and how a response becomes an outcome (G8).

- 2xx: taken. 3xx: a failure, never followed (Standard Webhooks, Svix).
- 408, 425, 429, 5xx, timeouts and connection errors: retried later, with the
  receiver's ``Retry-After`` (seconds or HTTP-date, RFC 9110 §10.2.3) as a floor.
- 410 (and 404 from Discord, ``gone_statuses``): the destination is gone.
- any other 4xx: failed at once, with the status and a body excerpt.

httpx errors are translated into ``DeliveryError`` here, once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from monitor.errors import DeliveryError
from monitor.sinks.ssrf import ForbiddenAddress, UnresolvedHost, pin

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_RETRY_AFTER = 24 * 3600.0  # G8: a hint is honoured, clamped to a day
DEFAULT_TIMEOUT = 15.0


class AlertClient:
    """The one httpx client for deliveries: no redirects, a total timeout, pinned addresses."""

    def __init__(self) -> None:
        self._client = httpx.Client(follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def post(
        self, sink: str, url: str, body: bytes, headers: Mapping[str, str], *,
        timeout: float = DEFAULT_TIMEOUT, allow_private: bool = False,
        gone_statuses: frozenset[int] = frozenset({410}),
    ) -> httpx.Response:  # fmt: skip
        """POST ``body``; return the 2xx response or raise a classified DeliveryError."""
        try:
            target = pin(url, allow_private=allow_private)
        except ForbiddenAddress as e:
            raise DeliveryError(sink, f"refused: {e}", retryable=False) from e
        except UnresolvedHost as e:
            raise DeliveryError(sink, str(e)) from e
        extensions: dict[str, object] = {"timeout": _timeout(timeout)}
        if url.startswith("https:"):
            extensions["sni_hostname"] = target.host  # TLS still checks the name, not the IP
        request = self._client.build_request(
            "POST", target.url, content=body, extensions=extensions,
            headers={**headers, "Host": _host_header(url)},
        )  # fmt: skip
        try:
            response = self._client.send(request)
            response.read()
        except httpx.TimeoutException as e:
            raise DeliveryError(sink, f"timeout after {timeout:g}s") from e
        except httpx.TransportError as e:
            raise DeliveryError(sink, f"connection error: {type(e).__name__}") from e
        return classify(sink, response, gone_statuses)


def _timeout(total: float) -> dict[str, float]:
    return {"connect": total, "read": total, "write": total, "pool": total}


def _host_header(url: str) -> str:
    return httpx.URL(url).netloc.decode("ascii")


def classify(
    sink: str, response: httpx.Response, gone_statuses: frozenset[int] = frozenset({410})
) -> httpx.Response:
    """Return a 2xx response; raise DeliveryError saying what to do about anything else."""
    status = response.status_code
    if 200 <= status < 300:
        return response
    excerpt = _excerpt(response)
    if status in gone_statuses:
        raise DeliveryError(sink, f"HTTP {status}: destination gone{excerpt}", retryable=False,
                            status_code=status, gone=True)  # fmt: skip
    if 300 <= status < 400:
        # A redirect is a failure we retry, never a place we go (Standard Webhooks).
        raise DeliveryError(sink, f"HTTP {status}: redirect not followed", status_code=status)
    if status in RETRYABLE_STATUSES or status >= 500:
        raise DeliveryError(sink, f"HTTP {status}{excerpt}", status_code=status,
                            retry_after=retry_after(response))  # fmt: skip
    raise DeliveryError(sink, f"HTTP {status}{excerpt}", retryable=False, status_code=status)


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """The receiver's Retry-After in seconds (delta or HTTP-date), clamped; None if absent or
    garbage. Discord also puts ``retry_after`` (seconds, float) in its JSON body."""
    value = response.headers.get("retry-after")
    seconds = parse_retry_after(value, now) if value else None
    if seconds is None and "json" in response.headers.get("content-type", ""):
        try:
            hint = response.json().get("retry_after")
            seconds = float(hint) if isinstance(hint, int | float) else None
        except (ValueError, AttributeError):
            seconds = None
    return None if seconds is None else min(max(seconds, 0.0), MAX_RETRY_AFTER)


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """``120`` or ``Wed, 21 Oct 2026 07:28:00 GMT`` -> seconds from now; None for garbage."""
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return min(max((when - datetime.fromtimestamp(current, UTC)).total_seconds(), 0.0),
               MAX_RETRY_AFTER)  # fmt: skip


def _excerpt(response: httpx.Response) -> str:
    """A short, one-line, repr-escaped body excerpt for the operator (never a secret of ours)."""
    text = response.text[:200] if response.content else ""
    return f": {text!r}" if text else ""
