"""The generic webhook sink: contract 4's JSON, signed per Standard Webhooks (G9).

Headers: ``webhook-id`` (the delivery id, stable across retries and
restarts), ``webhook-timestamp`` (unix seconds of this send) and, with a
secret, ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
During a rotation the sink has two secrets and sends one ``v1,`` signature
per secret, space-separated, so receivers on either secret verify
(standard-webhooks spec, "Signature scheme").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.domain import Alert, Rule
from monitor.sinks.http import DEFAULT_TIMEOUT, AlertClient

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64


def secret_key(secret: str) -> bytes:
    """The HMAC key: ``whsec_<base64>`` decoded, or raw text as UTF-8; ValueError if the key
    is not 24–64 bytes. The message never contains the secret."""
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from e
    else:
        key = secret.encode("utf-8")
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a secret must be {MIN_SECRET_BYTES}–{MAX_SECRET_BYTES} bytes, got {len(key)}"
        )
    return key


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def payload(alert: Alert, rule: Rule) -> dict[str, Any]:
    """Contract 4, exactly."""
    return {
        "type": "hit",
        "id": alert.delivery_id,
        "rule": {
            "id": rule.id,
            "title": rule.title,
            "severity": str(rule.severity),
            "tags": list(rule.tags),
        },
        "article": {
            "id": alert.article_id,
            "title": alert.title,
            "url": alert.url,
            "source": alert.source,
            "published_at": _iso(alert.published_at),
            "fetched_at": _iso(alert.fetched_at),
        },
        "matches": [{"start": m.start, "end": m.end, "text": m.text} for m in alert.matches],
        "snippet": alert.snippet,
        "story": {"id": alert.story_id, "articles": alert.story_articles},
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class WebhookSink:
    """POSTs one signed JSON hit per request."""

    def __init__(
        self, name: str, url: str, secrets: Sequence[str], client: AlertClient, *,
        timeout: float = DEFAULT_TIMEOUT, allow_private: bool = False,
    ):  # fmt: skip
        self.name = name
        self.url = url
        self._keys = tuple(secret_key(s) for s in secrets)  # the text is not kept
        self._client = client
        self.timeout = timeout
        self.allow_private = allow_private
        self.fingerprint = hashlib.sha256(url.encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # never show the keys
        return f"WebhookSink(name={self.name!r})"

    def headers(self, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
        }
        if self._keys:
            headers["webhook-signature"] = sign(self._keys, msg_id, ts, body)
        return headers

    def send(self, alert: Alert, rule: Rule) -> None:
        body = json.dumps(payload(alert, rule), ensure_ascii=False).encode()
        self._client.post(
            self.name, self.url, body, self.headers(alert.delivery_id, body),
            timeout=self.timeout, allow_private=self.allow_private,
        )  # fmt: skip
