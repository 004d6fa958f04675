"""Turn parsed feed entries into clean ``Article`` values (G4, G6).

Everything that comes out of feedparser is untrusted: NUL bytes and year-9999
dates pass straight through it, links keep ``javascript:``, RSS titles come
back verbatim (RELIABILITY.md). Here, per entry:

- text: NUL and C0 controls (except tab and newline) and lone surrogates
  removed (PostgreSQL rejects NUL in ``text``); HTML turned into plain text
  with paragraph breaks kept, through nh3 with every tag stripped (chosen over
  lxml by measurement: bench/bench_feeds.py prints both); a title only when
  the feed marks it as markup (Atom ``type="html"``/``"xhtml"``, an RSS title
  feedparser finds HTML in): a text title keeps "<!everyone>" or "a < b" as
  written, for every sink to escape (F22), where nh3 took them for tags;
- caps: title 1,000 characters, body 64 KiB;
- links: http(s) only, canonical (tracking parameters and fragment dropped);
- dates: unparseable or more than a day in the future -> the fetch time;
- key: sha256 of the GUID, else of the canonical link, else of title and
  content. Duplicate keys inside one fetch get deterministic distinct keys
  from their content, so the next poll maps each to the same key again
  (miniflux 2e609232). A secondary key (canonical link + title) lets a feed
  whose GUIDs change on every poll stay quiet (F15, miniflux#2358).
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nh3

from monitor.domain import Article
from monitor.sources.parse import ParsedFeed, RawEntry

MAX_TITLE = 1_000
MAX_BODY = 64 * 1024
MAX_URL = 2_048
FUTURE_SLACK = timedelta(days=1)

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BLOCK = re.compile(
    r"<\s*(?:br|/?p|/?div|/?li|/?h[1-6]|/?tr|/?blockquote|/?pre|/?ul|/?ol|/?table|hr)\b[^>]*>",
    re.I,
)
_LOOKS_LIKE_HTML = re.compile(r"<[a-zA-Z/!]|&[#\w]+;")
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|igshid|_hsenc|_hsmi)$")


def clean_text(value: str) -> str:
    """Remove NUL, C0 controls (tab and newline kept) and lone surrogates."""
    return _CONTROLS.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def html_to_text(value: str) -> str:
    """Plain text from an HTML fragment, one paragraph per line; scripts and styles dropped."""
    if not _LOOKS_LIKE_HTML.search(value):
        return value.strip()
    marked = _BLOCK.sub("\n", value)
    stripped = nh3.clean(marked, tags=set(), clean_content_tags={"script", "style"})
    text = html.unescape(stripped)
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def canonical_url(value: str) -> str | None:
    """The http(s) URL without tracking parameters and fragment; None for any other scheme."""
    value = clean_text(value).strip()
    if not value or len(value) > MAX_URL:
        return None
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None  # javascript:, data:, file: ... are never linked (F23)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not _TRACKING.match(k)])  # fmt: skip
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def entry_date(entry: RawEntry, fetched_at: datetime) -> datetime:
    """Published (else updated) time; the fetch time when missing, invalid or in the future."""
    for value in (entry.published, entry.updated):
        if not value:
            continue
        try:
            when = datetime.fromtimestamp(calendar.timegm((*value[:6], 0, 0, 0)), UTC)
        except (OverflowError, ValueError, OSError, TypeError):
            continue
        return fetched_at if when > fetched_at + FUTURE_SLACK else when
    return fetched_at


def _sha(*parts: str) -> str:
    joined = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()


def normalise_feed(source: str, feed: ParsedFeed, fetched_at: datetime) -> list[Article]:
    """Every entry of ``feed`` as an Article, with distinct, stable item keys."""
    articles: list[Article] = []
    used: set[str] = set()
    for entry in feed.entries:
        article = normalise_entry(source, entry, fetched_at)
        key, n = article.item_key, 0
        while key in used:  # G6: the same GUID twice in one fetch; tell them apart by content
            n += 1
            key = _sha(article.item_key, article.url or "", article.title, article.body, str(n))
        used.add(key)
        articles.append(article if key == article.item_key else replace(article, item_key=key))
    return articles


def normalise_entry(source: str, entry: RawEntry, fetched_at: datetime) -> Article:
    title = clean_text(entry.title)
    if entry.title_html:
        title = html_to_text(title).replace("\n", " ")
    title = " ".join(title.split())[:MAX_TITLE]
    raw_body = entry.content if len(entry.content) >= len(entry.summary) else entry.summary
    body = html_to_text(clean_text(raw_body))[:MAX_BODY]
    url = canonical_url(entry.link)
    guid = clean_text(entry.guid).strip()
    if guid:
        key = _sha("guid", guid)
    elif url:
        key = _sha("link", url)
    else:
        key = _sha("content", title, body)
    alt = (_sha("link+title", url, title.casefold()),) if url and title else ()
    return Article(
        source=source,
        item_key=key,
        title=title,
        body=body,
        url=url,
        published_at=entry_date(entry, fetched_at),
        fetched_at=fetched_at,
        alt_keys=alt,
    )
