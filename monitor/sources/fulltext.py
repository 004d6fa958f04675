"""Optional full text: replace a new item's summary with its page's main text (issue #3, item 6).

Some feeds carry only a headline or a one-line teaser, so a rule that names a
word of the story never sees it. For a feed with ``full_text: true`` the
pipeline hands this step the poll's *new* articles (after the known-keys
filter, so a known item's page is never fetched again) and gets back the same
articles, each whose page gave a longer text carrying that text as its body.

- Pages go through the feed's own ``Fetcher``: the same total deadline, size
  cap, redirect limit and SSRF check as the feed (G1, G2).
- The main text is ``pagetext.extract_main_text``'s, the same reading a
  watched folder's ``.html`` files get; trafilatura only ever sees the bytes
  we fetched.
- At most ``MAX_PAGES_PER_POLL`` pages per poll: a feed that suddenly lists
  1,000 new items must not hold its worker for 1,000 page fetches. The rest
  keep their summaries (a newly seen item is stored once, so they never get
  a second chance: the summary is what the feed itself said).
- Any failure (HTTP error, timeout, not HTML, nothing extracted) keeps the
  summary and logs one line; it never fails the feed's poll.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from monitor.domain import Article
from monitor.errors import SourceError
from monitor.sources.fetch import Fetcher
from monitor.sources.normalise import MAX_BODY, clean_text
from monitor.sources.pagetext import extract_main_text

log = logging.getLogger("monitor.sources.fulltext")

MAX_PAGES_PER_POLL = 20
# Pages fetched at once for one feed; the fetcher's per-host limit is the real bound
# (a feed's pages usually share its host), this only keeps threads from idling.
PARALLEL_PAGES = 4
HTML_TYPES = ("text/html", "application/xhtml+xml")


def add_full_text(
    fetcher: Fetcher,
    source: str,
    articles: Sequence[Article],
    *,
    allow_private: bool | None = None,
    max_pages: int = MAX_PAGES_PER_POLL,
) -> list[Article]:
    """``articles`` in order, each with its page's main text as body when that is longer."""
    wanted = [i for i, a in enumerate(articles) if a.url][:max_pages]
    skipped = sum(1 for a in articles if a.url) - len(wanted)
    if skipped:
        log.warning("full text page limit source=%s fetched=%d skipped=%d",
                    source, len(wanted), skipped)  # fmt: skip
    if not wanted:
        return list(articles)

    def one(index: int) -> Article:
        return _with_page_text(fetcher, source, articles[index], allow_private)

    out = list(articles)
    with ThreadPoolExecutor(min(PARALLEL_PAGES, len(wanted)), "fulltext") as pool:
        for index, article in zip(wanted, pool.map(one, wanted), strict=True):
            out[index] = article
    return out


def _with_page_text(
    fetcher: Fetcher, source: str, article: Article, allow_private: bool | None
) -> Article:
    """The article with its page's text as body, or unchanged (one log line says why)."""
    assert article.url is not None  # add_full_text only passes articles with a link
    try:
        text = page_text(fetcher, source, article.url, allow_private)
    except SourceError as e:
        log.warning("full text kept summary source=%s article=%s reason=%s detail=%r",
                    source, article.url[:200], e.reason, e.detail[:200])  # fmt: skip
        return article
    if len(text) <= len(article.body):
        log.info("full text kept summary source=%s article=%s reason=not_longer",
                 source, article.url[:200])  # fmt: skip
        return article
    return replace(article, body=text)


def page_text(fetcher: Fetcher, source: str, url: str, allow_private: bool | None) -> str:
    """The main text of the HTML page at ``url``; ``SourceError`` when there is none."""
    result = fetcher.fetch(source, url, allow_private=allow_private)
    kind = result.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind not in HTML_TYPES:
        raise SourceError(source, "not_html", kind[:100])
    # Bytes, not text: trafilatura detects the page's charset (a feed's pages are not
    # all UTF-8, and the HTTP header is often missing or wrong).
    text = extract_main_text(source, result.body).text
    return clean_text(text).strip()[:MAX_BODY]
