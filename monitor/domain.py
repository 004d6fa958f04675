"""Domain types shared by every step. Frozen dataclasses, no I/O."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal


def utcnow() -> datetime:
    """The one wall clock; steps take ``now`` as an argument so tests can pass their own."""
    return datetime.now(UTC)


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


# How a rule's bare words match: as written, or with their inflected forms (contract 2).
FormsMode = Literal["exact", "inflected"]
FORMS_MODES: tuple[FormsMode, ...] = ("exact", "inflected")


@dataclass(frozen=True)
class Entity:
    """A named thing from a watchlist; ``entity:id`` matches any of its names."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Example:
    """A labelled example of a rule: text that should (``expected``) or should not match it.

    Either ``text`` (its first line is the title) or ``path``, a file read as
    the folder source reads it. ``place`` is where it was written, for messages.
    """

    expected: bool
    text: str | None = None
    path: str | None = None
    place: str = ""


@dataclass(frozen=True)
class Rule:
    """A watch rule as written in a watchlist; ``query`` is the source text."""

    id: str
    title: str
    query: str
    notify: tuple[str, ...]
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    severity: Severity = Severity.MEDIUM
    enabled: bool = True
    file: str = ""
    examples: tuple[Example, ...] = ()
    realert: timedelta | None = None  # at most one alert per window (issue #4); None: no limit
    forms: FormsMode = "exact"  # "inflected": bare words match their forms (monitor.forms)


@dataclass(frozen=True)
class Article:
    """A normalised article from any source, not yet stored.

    ``item_key`` identifies the item within its source (GUID, link or content
    hash): an item key seen once is never ingested again.
    """

    source: str
    item_key: str
    title: str
    body: str
    url: str | None
    published_at: datetime | None
    fetched_at: datetime
    path: str | None = None
    # More keys that mean "this item was seen", e.g. link + title for feeds whose
    # GUIDs change on every poll (F15): an article whose alt key is known is not new.
    alt_keys: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """What queries run over: the title is its own paragraph, then the body.

        Match spans are character offsets into this string.
        """
        return f"{self.title}\n\n{self.body}" if self.body else self.title

    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.body)


def content_hash(title: str, body: str) -> str:
    return hashlib.sha256(f"{title}\x00{body}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Match:
    """One term occurrence that made a query true: ``text[start:end]``."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """A rule that matched an article, with the occurrences that made it match."""

    rule: Rule
    matches: tuple[Match, ...] = field(default_factory=tuple)


# A fixed namespace so delivery ids are the same on every replica and restart.
DELIVERY_NAMESPACE = uuid.UUID("6f1c1d2e-55b4-4a5e-9d59-7a43c8d1e0a1")


def delivery_id(rule_id: str, source: str, item_key: str, sink: str) -> str:
    """Deterministic id of the delivery of one hit to one sink (G7).

    It is the webhook-id, so it must not change across retries, restarts or replicas.
    """
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{rule_id}\x00{source}\x00{item_key}\x00{sink}"))


def snippet_around(text: str, start: int, end: int, width: int = 300) -> tuple[int, int]:
    """The bounds of the sentence-ish window around ``text[start:end]``.

    Looks back and forward to a sentence end or line break, capped at ``width``
    characters on each side, so the console and webhooks can show context.
    """
    lo = max(0, start - width)
    hi = min(len(text), end + width)
    left = start
    while left > lo and text[left - 1] not in ".!?\n":
        left -= 1
    right = end
    while right < hi and text[right] not in ".!?\n":
        right += 1
    if right < len(text) and text[right] in ".!?":
        right += 1
    while left < start and text[left].isspace():
        left += 1
    return left, right


@dataclass(frozen=True)
class PollOutcome:
    """What one poll of one source produced, for the store to record in one transaction."""

    source: str
    articles: tuple[tuple[Article, tuple[Hit, ...]], ...] = ()
    error: str | None = None  # a stable reason key plus detail; None when the poll worked
    etag: str | None = None
    last_modified: str | None = None
    next_poll_at: datetime | None = None
    status: str = "ok"
    consecutive_errors: int = 0
    # item key -> the article's story signature when the parse worker made it already
    signatures: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    """One pending delivery of one hit to one sink, with what a sink needs to render it."""

    delivery_id: str
    sink: str
    rule_id: str
    article_id: int
    title: str
    body: str
    url: str | None
    source: str
    published_at: datetime | None
    fetched_at: datetime
    matches: tuple[Match, ...]
    snippet: str
    story_id: int | None
    story_articles: int
    attempts: int
    hit_at: datetime
    lease_token: int | None = None  # set when claimed under a lease (replicas)
    held_back: int = 0  # hits of this rule kept quiet by its realert window since its last alert

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body}" if self.body else self.title
