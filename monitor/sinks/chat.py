"""Slack and Discord incoming-webhook sinks: their own formats, feed text made harmless (G10).

Everything from a feed (title, source, snippet, URL) is untrusted:

- Slack: ``& < >`` are escaped in every untrusted string, so ``<!channel>``,
  ``<@U123>`` and ``<https://evil|yourbank.com>`` arrive as plain text
  (api.slack.com/reference/surfaces/formatting#escaping). The article link is
  rebuilt by us as ``<url|text>`` only for http(s) URLs, with ``|``, ``<`` and
  ``>`` percent-encoded inside the URL so it cannot end the link early.
- Discord: ``allowed_mentions: {"parse": []}`` on every message, so nothing
  pings (discord.com/developers/docs/resources/message#allowed-mentions-object);
  markdown is backslash-escaped, so ``[bank](https://evil)`` is no masked link
  and ``# x`` no heading; content is cut at 2,000 characters (the API limit);
  404 means the webhook was deleted, so it is treated like 410 (gone).

Both are rate limited by the outbox worker (``min_interval``; Slack allows
about one message per second per webhook).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from monitor.domain import Alert, Rule
from monitor.sinks.http import DEFAULT_TIMEOUT, AlertClient

DISCORD_LIMIT = 2000
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]()\-:<@])")


def one_line(text: str) -> str:
    """Feed text may carry newlines or bidi overrides meant to forge structure (F26)."""
    return "".join(" " if ch in "\r\n\t" or not ch.isprintable() else ch for ch in text).strip()


def slack_escape(text: str) -> str:
    return one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_link(url: str | None) -> str | None:
    """Only http(s) URLs become links; ``| < >`` and spaces are percent-encoded (F23, F24)."""
    if not url or urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        return None
    return quote(one_line(url), safe=":/?#[]@!$&'()*+,;=%-._~")


def context(alert: Alert) -> str:
    """Story size and hits held back by realert, e.g. `` · story of 5 · 3 more held back``."""
    story = f" · story of {alert.story_articles}" if alert.story_articles > 1 else ""
    held = f" · {alert.held_back} more held back (realert)" if alert.held_back else ""
    return story + held


def slack_text(alert: Alert, rule: Rule) -> str:
    title = slack_escape(alert.title)
    link = safe_link(alert.url)
    headline = f"<{link}|{title}>" if link else title
    story = context(alert)
    return (
        f"*[{slack_escape(str(rule.severity))}] {slack_escape(rule.title)}*\n"
        f"{headline} — {slack_escape(alert.source)}{story}\n"
        f"> {slack_escape(alert.snippet)}"
    )


def discord_escape(text: str) -> str:
    return _DISCORD_SPECIAL.sub(r"\\\1", one_line(text))


def discord_text(alert: Alert, rule: Rule) -> str:
    link = safe_link(alert.url)
    story = context(alert)
    lines = [
        f"**\\[{discord_escape(str(rule.severity))}\\] {discord_escape(rule.title)}**",
        f"{discord_escape(alert.title)} — {discord_escape(alert.source)}{story}",
        discord_escape(alert.snippet),
    ]
    if link:
        lines.append(f"<{link}>")  # angle brackets: a plain link, no embed preview
    return "\n".join(lines)


def cut(text: str, limit: int = DISCORD_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip("\\") + "…"


class _ChatSink:
    gone_statuses: frozenset[int] = frozenset({410})
    default_min_interval = 1.0

    def __init__(
        self, name: str, url: str, client: AlertClient, *, timeout: float = DEFAULT_TIMEOUT,
        allow_private: bool = False, min_interval: float | None = None,
    ):  # fmt: skip
        self.name = name
        self.url = url
        self._client = client
        self.timeout = timeout
        self.allow_private = allow_private
        self.min_interval = self.default_min_interval if min_interval is None else min_interval
        self.fingerprint = hashlib.sha256(url.encode()).hexdigest()[:16]

    def body(self, alerts: Sequence[tuple[Alert, Rule]]) -> dict:
        raise NotImplementedError

    def send(self, alert: Alert, rule: Rule) -> None:
        self._post(self.body([(alert, rule)]))

    def send_digest(self, alerts: Sequence[tuple[Alert, Rule]]) -> None:
        self._post(self.body(alerts))

    def _post(self, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self._client.post(
            self.name, self.url, data, {"Content-Type": "application/json"},
            timeout=self.timeout, allow_private=self.allow_private,
            gone_statuses=self.gone_statuses,
        )  # fmt: skip


class SlackSink(_ChatSink):
    def body(self, alerts: Sequence[tuple[Alert, Rule]]) -> dict:
        if len(alerts) == 1:
            text = slack_text(*alerts[0])
        else:
            text = f"*Digest: {len(alerts)} hits*\n\n" + "\n\n".join(
                slack_text(a, r) for a, r in alerts
            )
        # mrkdwn stays on for our own *bold* and links; unfurling off so no preview is fetched.
        return {"text": text, "unfurl_links": False, "unfurl_media": False}


class DiscordSink(_ChatSink):
    gone_statuses = frozenset({404, 410})

    def body(self, alerts: Sequence[tuple[Alert, Rule]]) -> dict:
        if len(alerts) == 1:
            text = discord_text(*alerts[0])
        else:
            text = f"**Digest: {len(alerts)} hits**\n\n" + "\n\n".join(
                discord_text(a, r) for a, r in alerts
            )
        return {"content": cut(text), "allowed_mentions": {"parse": []}}
