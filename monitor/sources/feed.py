"""Read one feed: fetch -> parse -> normalise, plus the server's scheduling hints.

Reads top to bottom like Miniflux's ``RefreshFeed``: a conditional request; a
304 parses nothing; a 200 must be a feed (an empty body or an HTML page is a
failure, never "no news": kurtmckee/feedparser#460); entries are normalised
(in the parse worker, with their story signatures).
What to do with the result (store it, schedule the next poll) is the
pipeline's business.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor import schedule
from monitor.domain import Article
from monitor.errors import SourceError
from monitor.sources.fetch import Fetcher
from monitor.sources.parse import ParserPool

log = logging.getLogger("monitor.sources.feed")


@dataclass(frozen=True)
class FeedRead:
    """What one poll of one feed produced."""

    articles: tuple[Article, ...]
    not_modified: bool
    etag: str | None
    last_modified: str | None
    hint: timedelta | None  # how long the server says to wait (Cache-Control, Expires, ttl)
    warning: str | None = None
    # item key -> the parser pool's annotation of the article (its story signature)
    annotations: Mapping[str, bytes] = field(default_factory=dict)


class FeedReader:
    """Reads feeds through the shared fetcher and parse workers."""

    def __init__(self, fetcher: Fetcher, parser: ParserPool):
        self.fetcher = fetcher
        self.parser = parser

    def read(
        self,
        source: str,
        url: str,
        now: datetime,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        allow_private: bool | None = None,
    ) -> FeedRead:
        """Fetch, parse and normalise; raise ``SourceError`` (``FetchError``) on failure."""
        result = self.fetcher.fetch(
            source, url, etag=etag, last_modified=last_modified, allow_private=allow_private
        )
        cache_hint = schedule.cache_lifetime(result.headers, now)
        new_etag = result.headers.get("etag") or etag
        new_modified = result.headers.get("last-modified") or last_modified
        if result.not_modified:
            return FeedRead((), True, new_etag, new_modified, cache_hint)
        if not result.body.strip():
            raise SourceError(source, "empty_body", url[:200])
        digest = self.parser.read(source, result.body, result.headers, now)
        if not digest.version and not digest.entries:
            kind = result.headers.get("content-type", "unknown type")
            raise SourceError(source, "not_a_feed", kind[:100])
        if digest.warning:
            log.warning("feed warning source=%s warning=%r", source, digest.warning)
        hints = [h for h in (cache_hint, schedule.rss_ttl(digest.ttl)) if h is not None]
        annotations = {
            a.item_key: note for a, note in zip(digest.articles, digest.annotations, strict=False)
        }
        return FeedRead(
            digest.articles, False, new_etag, new_modified, max(hints) if hints else None,
            digest.warning, annotations,
        )  # fmt: skip
