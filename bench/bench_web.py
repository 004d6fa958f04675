"""Dashboard page times on a large archive (make bench): 100,000 articles and 20,000 hits
in a SQLite file, each view's first page through the real app (Starlette's TestClient),
median of N, against the 200 ms goal of issue #8; naive baselines in the same run:
OFFSET pagination at a deep page, the story lookup without its index, and the chart
computed by loading every hit through the ORM. Never asserts on time.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Executable, insert, select, text, tuple_
from sqlmodel import Session
from sqlmodel import select as orm_select
from starlette.testclient import TestClient

from monitor.config import Config, load_config
from monitor.store import Store
from monitor.store.tables import (
    ArticleRow,
    DeliveryAttemptRow,
    DeliveryRow,
    HitRow,
    SourceRow,
    StoryRow,
)
from monitor.web import create_web_app
from monitor.web.queries import ARTICLES, HITS, SOURCES, WebQueries

ARTICLES_N, HITS_N, SOURCES_N, RULES_N, DAYS = 100_000, 20_000, 20, 40, 90
GOAL_MS = 200.0
RUNS = 15
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WORDS = [
    "North",
    "Korea",
    "Russia",
    "Pyongyang",
    "Moscow",
    "summit",
    "sanctions",
    "committee",
    "panel",
    "report",
    "ambassador",
    "Matsegora",
    "trilateral",
    "Seoul",
    "Tokyo",
    "Beijing",
    "talks",
    "visit",
    "minister",
    "envoy",
    "missile",
    "launch",
    "statement",
    "agency",
    "said",
    "on",
    "Tuesday",
    "the",
    "of",
    "and",
    "in",
    "to",
    "a",
]
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


def write_config(root: Path, db: Path) -> Config:
    folders = "\n".join(f"    - {{name: outlet{i:02d}, path: .}}" for i in range(SOURCES_N))
    rules = "\n".join(
        f"  - {{id: rule-{i:02d}, title: 'Watch rule {i:02d}', query: 'w{i}', "
        f"severity: {('info', 'low', 'medium', 'high', 'critical')[i % 5]}, tags: [t{i % 4}]}}"
        for i in range(RULES_N)
    )
    (root / "w.yaml").write_text(f"rules:\n{rules}\n")
    (root / "monitor.yaml").write_text(
        f"database: sqlite:///{db}\nwatchlists: [w.yaml]\nsources:\n  folders:\n{folders}\n"
    )
    return load_config(root / "monitor.yaml", {})


def fill(store: Store, rng: random.Random) -> None:
    """Core bulk inserts (30 k rows/s measured, DESIGN.md) in a few big transactions."""
    at = lambda i, n: NOW - timedelta(seconds=DAYS * 86400 * (n - i) / n)  # noqa: E731
    stories = ARTICLES_N * 3 // 4  # a quarter of the articles are copies of another's story
    with store.engine.begin() as conn:
        conn.execute(insert(SourceRow), [
            {"name": f"outlet{i:02d}", "kind": "folder", "locator": ".", "status":
             "failing" if i % 7 == 0 else "ok", "last_success_at": NOW, "next_poll_at": NOW,
             "last_error": "http_status: 503" if i % 7 == 0 else None,
             "consecutive_errors": 3 if i % 7 == 0 else 0, "items_seen": ARTICLES_N // SOURCES_N,
             "lease_token": 0} for i in range(SOURCES_N)])  # fmt: skip
        conn.execute(insert(StoryRow), [{"created_at": at(i, stories), "article_count": 1}
                                        for i in range(stories)])  # fmt: skip
        for lo in range(0, ARTICLES_N, 10_000):
            conn.execute(insert(ArticleRow), [{
                "source_id": i % SOURCES_N + 1, "item_key": f"k{i}",
                "title": " ".join(rng.choices(WORDS, k=8)),
                "body": ". ".join(" ".join(rng.choices(WORDS, k=15)) for _ in range(12)),
                "url": f"https://example.org/{i}", "fetched_at": at(i, ARTICLES_N),
                "content_hash": f"{i:064x}", "story_id": min(i, rng.randrange(stories)) + 1,
            } for i in range(lo, lo + 10_000)])  # fmt: skip
        hit_articles = sorted(rng.sample(range(1, ARTICLES_N + 1), HITS_N))
        conn.execute(insert(HitRow), [{
            "rule_id": f"rule-{rng.randrange(RULES_N):02d}", "article_id": a,
            "story_id": None, "matches": json.dumps([{"start": 0, "end": 5, "text": "North"}]),
            "snippet": "North Korea", "created_at": at(a, ARTICLES_N),
        } for a in hit_articles])  # fmt: skip
        conn.execute(insert(DeliveryRow), [{
            "id": f"d{h}-{sink}", "hit_id": h, "sink": sink, "attempts": 1 + (h % 50 == 0) * 7,
            "status": "failed" if h % 50 == 0 else "delivered", "created_at": NOW,
            "last_attempt_at": NOW, "lease_token": 0,
        } for h in range(1, HITS_N + 1) for sink in ("console", "ops")])  # fmt: skip
        conn.execute(insert(DeliveryAttemptRow), [
            {"delivery_id": f"d{h}-ops", "attempted_at": NOW, "status_code": 500}
            for h in range(1, HITS_N + 1, 50) for _ in range(8)])  # fmt: skip
        conn.execute(text("ANALYZE"))


def median_ms(fn: Callable[[], object], runs: int = RUNS) -> float:
    fn()  # warm the page cache and the template cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def get(client: TestClient, url: str) -> Callable[[], object]:
    def fetch() -> object:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response

    return fetch


def pages(client: TestClient, store: Store) -> None:
    with store.engine.connect() as conn:
        deep_cursor = conn.execute(
            select(HITS.c.created_at, HITS.c.id)
            .order_by(HITS.c.created_at.desc(), HITS.c.id.desc()).offset(HITS_N - 100).limit(1)
        ).one()  # fmt: skip
        busy_hit = conn.execute(text(
            "SELECT h.id FROM hits h JOIN articles a ON a.id = h.article_id "
            "JOIN (SELECT story_id FROM articles GROUP BY story_id ORDER BY count(*) DESC "
            "LIMIT 1) s ON s.story_id = a.story_id LIMIT 1")).scalar()  # fmt: skip
        busy_hit = busy_hit or 1
    micros = (deep_cursor[0] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    print(f"  {'page':<42} {'median':>8}   goal {GOAL_MS:.0f} ms")
    for name, url in [
        ("hits, first page", "/"),
        ("hits, first page, one rule", "/?rule=rule-07"),
        ("hits, first page, tag + source", "/?tag=t1&source=outlet03"),
        ("hits, page 395 of 400 (keyset cursor)", f"/?before={micros}.{deep_cursor[1]}"),
        (f"hit detail (hit {busy_hit}, its story, deliveries)", f"/hits/{busy_hit}"),
        ("rules chart, 30 days", "/rules"),
        ("rules chart, 365 days", "/rules?days=365"),
        ("sources and failing deliveries", "/sources"),
    ]:
        ms = median_ms(get(client, url))
        verdict = "ok" if ms < GOAL_MS else "OVER GOAL"
        print(f"  {name:<42} {ms:7.1f} ms  {verdict}")


def fetch_all(store: Store, query: Executable, params: dict | None = None) -> list:
    with store.engine.connect() as conn:
        return list(conn.execute(query, params or {}))


def baselines(store: Store) -> None:
    """Each naive way next to ours, both as bare queries so only the method differs."""

    def hit_page(offset: int | None, before: tuple | None) -> Callable[[], object]:
        query = (select(HITS.c.id, ARTICLES.c.title, ARTICLES.c.body, SOURCES.c.name)
                 .join(ARTICLES, ARTICLES.c.id == HITS.c.article_id)
                 .join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
                 .order_by(HITS.c.created_at.desc(), HITS.c.id.desc()).limit(51))  # fmt: skip
        if offset:
            query = query.offset(offset)
        if before:
            query = query.where(tuple_(HITS.c.created_at, HITS.c.id) < tuple_(*before))
        return lambda: fetch_all(store, query)

    with store.engine.connect() as conn:
        cursor = tuple(
            conn.execute(
                select(HITS.c.created_at, HITS.c.id)
                .order_by(HITS.c.created_at.desc(), HITS.c.id.desc())
                .offset(HITS_N - 101)
                .limit(1)
            ).one()
        )
        story = conn.execute(
            text("SELECT story_id FROM articles ORDER BY id DESC LIMIT 1")
        ).scalar()
    keyset = median_ms(hit_page(None, cursor))
    offset = median_ms(hit_page(HITS_N - 100, None))
    print(
        f"  deep page (row {HITS_N - 100:,}):   keyset {keyset:6.1f} ms   OFFSET {offset:6.1f} ms"
        f"   ratio OFFSET/keyset {offset / keyset:5.1f}x"
    )

    def story_query(hint: str) -> Callable[[], object]:
        sql = text(f"SELECT id, title FROM articles {hint} WHERE story_id = :s")
        return lambda: fetch_all(store, sql, {"s": story})

    indexed, scan = median_ms(story_query("")), median_ms(story_query("NOT INDEXED"), runs=5)
    print(
        f"  story lookup:           index  {indexed:6.1f} ms   scan   {scan:6.1f} ms"
        f"   ratio scan/index {scan / indexed:7.1f}x"
    )

    since = NOW - timedelta(days=29)
    ours = median_ms(lambda: WebQueries(store.engine).rule_counts(since))

    def orm_chart() -> object:
        with Session(store.engine) as s:
            rows = s.exec(orm_select(HitRow).where(HitRow.created_at >= since)).all()
            return Counter((r.rule_id, r.created_at.date()) for r in rows)

    naive = median_ms(orm_chart, runs=5)
    print(
        f"  chart counts, 30 days:  GROUP BY {ours:6.1f} ms   ORM rows {naive:6.1f} ms"
        f"   ratio ORM/GROUP BY {naive / ours:5.1f}x"
    )


def main() -> None:
    rng = random.Random(8)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_config(root, root / "web.db")
        store = Store(config.database_url)
        start = time.perf_counter()
        fill(store, rng)
        size = (root / "web.db").stat().st_size / 2**20
        print(f"web: {ARTICLES_N:,} articles, {HITS_N:,} hits, {2 * HITS_N:,} deliveries, "
              f"{RULES_N} rules, {SOURCES_N} sources; SQLite {size:.0f} MiB, "
              f"filled in {time.perf_counter() - start:.1f} s; median of {RUNS} runs")  # fmt: skip
        app = create_web_app(store.engine, lambda: config, "127.0.0.1:0", clock=lambda: NOW)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            pages(client, store)
        print("naive baselines (bare queries, same database):")
        baselines(store)
        store.close()


if __name__ == "__main__":
    sys.exit(main())
