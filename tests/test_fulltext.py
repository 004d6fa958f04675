"""Optional full text (issue #3 item 6): new items' pages fetched and their main text stored.

A loopback server serves a feed whose items link to article pages on the same server.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedserver import FeedServer, Request, item, rss
from sqlalchemy import text

from flows import Clock
from monitor.config import load_config
from monitor.domain import Article
from monitor.errors import ConfigError
from monitor.pipeline import Pipeline
from monitor.sinks.console import ConsoleSink
from monitor.sources.fetch import Fetcher
from monitor.sources.fulltext import add_full_text
from monitor.store import Store

# The rule's word appears only in the article pages, never in the feed.
WATCHLIST = """
rules:
  - id: yongbyon
    title: Yongbyon
    query: Yongbyon
"""
PARAGRAPHS = [
    "Satellite images taken on Monday show new construction at the Yongbyon nuclear "
    "complex, according to analysts who have studied the site for more than a decade.",
    "The analysts said the work appeared to expand a building that houses centrifuges, "
    "and that vehicles had been seen moving between the reactor and a storage area.",
    "Officials in Seoul declined to comment on the report, saying only that they were "
    "monitoring developments closely together with their partners in the region.",
]


def page(paragraphs: list[str]) -> bytes:
    """An article page with navigation and a footer around the story, as news sites have."""
    story = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        "<!DOCTYPE html><html><head><title>Story</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/world'>World</a></nav>"
        f"<article><h1>New construction seen</h1>{story}</article>"
        "<footer>Copyright 2026 Example News. All rights reserved.</footer></body></html>"
    ).encode()


@pytest.fixture
def make(tmp_path: Path, server: FeedServer) -> Iterator:
    made: list[tuple[Pipeline, Store]] = []

    def build(full_text: bool) -> tuple[Pipeline, Store, Clock]:
        (tmp_path / "watchlists").mkdir(exist_ok=True)
        (tmp_path / "watchlists" / "w.yaml").write_text(WATCHLIST)
        flag = "true" if full_text else "false"
        (tmp_path / "monitor.yaml").write_text(
            "database: sqlite:///data/m.db\nwatchlists: [watchlists/*.yaml]\n"
            f"sources:\n  feeds:\n    - {{name: wire, url: '{server.url('/feed.xml')}', "
            f"interval: 1m, full_text: {flag}}}\n"
            "fetch: {timeout: 1.5s, read_timeout: 1s, parse_timeout: 2s, "
            "allow_private_networks: true}\n"
        )
        config = load_config(tmp_path / "monitor.yaml", env={})
        store = Store(config.database_url)
        clock = Clock(datetime.now(UTC))
        pipeline = Pipeline(config, store, {"console": ConsoleSink(file=io.StringIO())}, clock)
        made.append((pipeline, store))
        return pipeline, store, clock

    yield build
    for pipeline, store in made:
        pipeline.close()
        store.close()


def serve_feed(server: FeedServer, numbers: list[int]) -> None:
    """The feed lists items ``numbers``, each a teaser linking to /a/<n> on the server."""
    items = [
        item(n, link=server.url(f"/a/{n}"), description=f"<p>Teaser {n}.</p>") for n in numbers
    ]
    server.routes["/feed.xml"] = lambda r: r.send(200, rss(items), {"Content-Type": "text/xml"})


def serve_page(server: FeedServer, n: int, body: bytes) -> None:
    server.routes[f"/a/{n}"] = lambda r: r.send(200, body, {"Content-Type": "text/html"})


def bodies(store: Store) -> dict[str, str]:
    with store.engine.connect() as c:
        return dict(c.execute(text("SELECT url, body FROM articles")).all())  # type: ignore[arg-type]


def test_full_text_stores_the_pages_main_text_and_a_body_only_word_hits(
    server: FeedServer, make
) -> None:
    """With full_text the stored body is the page's main text, so a rule on a body word hits."""
    serve_feed(server, [1])
    serve_page(server, 1, page(PARAGRAPHS))
    pipeline, store, _ = make(full_text=True)
    (summary,) = pipeline.poll_all()
    assert (summary.error, summary.new_articles, summary.hits) == (None, 1, 1)
    body = bodies(store)[server.url("/a/1")]
    assert PARAGRAPHS[0] in body and PARAGRAPHS[2] in body
    assert "Copyright" not in body and "Home" not in body  # boilerplate left out
    assert [h.rule_id for h in store.hits()] == ["yongbyon"]


def test_a_page_that_404s_or_times_out_keeps_the_summary(server: FeedServer, make) -> None:
    """A 404 page and a page that never answers keep their teasers; the poll still succeeds."""

    def silent(request: Request) -> None:
        server.stopping.wait(5)  # scripted: never answer within the 1.5 s fetch deadline

    serve_feed(server, [1, 2, 3])
    serve_page(server, 1, page(PARAGRAPHS))
    server.routes["/a/3"] = silent  # /a/2 has no route: 404
    pipeline, store, _ = make(full_text=True)
    (summary,) = pipeline.poll_all()
    assert (summary.error, summary.new_articles, summary.hits) == (None, 3, 1)
    stored = bodies(store)
    assert stored[server.url("/a/2")] == "Teaser 2."
    assert stored[server.url("/a/3")] == "Teaser 3."
    assert PARAGRAPHS[1] in stored[server.url("/a/1")]


def test_known_items_pages_are_not_fetched_again(server: FeedServer, make) -> None:
    """A second poll fetches only the page of the one item it had not seen."""
    for n in (1, 2, 3):
        serve_page(server, n, page(PARAGRAPHS))
    serve_feed(server, [1, 2])
    pipeline, _store, clock = make(full_text=True)
    pipeline.poll_all()
    assert (server.counts["/a/1"], server.counts["/a/2"]) == (1, 1)
    serve_feed(server, [1, 2, 3])
    clock.now += timedelta(minutes=2)
    (second,) = pipeline.poll_due(wait_for_feeds=True)
    assert (second.error, second.new_articles) == (None, 1)
    assert [server.counts[f"/a/{n}"] for n in (1, 2, 3)] == [1, 1, 1]


def test_without_full_text_no_page_is_fetched(server: FeedServer, make) -> None:
    """A feed without full_text stores its summaries and never asks for a page."""
    serve_feed(server, [1, 2])
    serve_page(server, 1, page(PARAGRAPHS))
    pipeline, store, _ = make(full_text=False)
    (summary,) = pipeline.poll_all()
    assert (summary.error, summary.new_articles, summary.hits) == (None, 2, 0)
    assert not [p for p in server.counts if p.startswith("/a/")]
    assert bodies(store)[server.url("/a/1")] == "Teaser 1."


def test_pages_per_poll_are_bounded(server: FeedServer, make) -> None:
    """Of many new items only the first max_pages pages are fetched; the rest keep summaries."""
    for n in range(5):
        serve_page(server, n, page(PARAGRAPHS))
    pipeline, _store, clock = make(full_text=True)
    serve_feed(server, list(range(5)))
    read = pipeline.reader().read("wire", server.url("/feed.xml"), clock.now, allow_private=True)
    out = add_full_text(
        pipeline.reader().fetcher, "wire", list(read.articles), allow_private=True, max_pages=2
    )
    fetched = sum(server.counts[f"/a/{n}"] for n in range(5))
    assert fetched == 2
    assert [PARAGRAPHS[0] in a.body for a in out].count(True) == 2
    assert [a.item_key for a in out] == [a.item_key for a in read.articles]  # order kept


def test_a_shorter_page_text_keeps_the_summary(server: FeedServer) -> None:
    """The page's text replaces the body only when it is longer than the feed's summary."""
    serve_page(server, 1, page(["Short."]))
    summary = " ".join(PARAGRAPHS)
    fetcher = Fetcher(allow_private=True)
    try:
        article = Article("wire", "k1", "T", summary, server.url("/a/1"), None, datetime.now(UTC))
        (out,) = add_full_text(fetcher, "wire", [article], allow_private=True)
        assert out.body == summary and server.counts["/a/1"] == 1
    finally:
        fetcher.close()


def test_a_non_html_page_keeps_the_summary(server: FeedServer) -> None:
    """A link to a PDF (or any non-HTML type) is not parsed as HTML; the summary stays."""
    server.routes["/a/1"] = lambda r: r.send(200, b"%PDF-1.7", {"Content-Type": "application/pdf"})
    fetcher = Fetcher(allow_private=True)
    try:
        article = Article("wire", "k1", "T", "Teaser", server.url("/a/1"), None, datetime.now(UTC))
        (out,) = add_full_text(fetcher, "wire", [article], allow_private=True)
        assert out.body == "Teaser"
    finally:
        fetcher.close()


def test_full_text_must_be_a_boolean(tmp_path: Path) -> None:
    """`full_text: maybe` is a config error naming the feed's key."""
    (tmp_path / "monitor.yaml").write_text(
        "database: sqlite:///data/m.db\nsources:\n  feeds:\n"
        "    - {name: wire, url: 'https://wire.example/rss', full_text: maybe}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "monitor.yaml", env={})
    assert "sources.feeds[0].full_text" in str(caught.value)
