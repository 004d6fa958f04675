"""The bulk writes of a poll transaction: tombstones, stories, articles, hits, deliveries.

A poll's new items are written in a handful of statements, whatever their
number: one multi-row ``INSERT ... RETURNING`` per table (SQLAlchemy's
insertmanyvalues), and the reads the suppression rules need done once per
poll. RETURNING gives rows in no promised order, so each row comes back with
its natural key (an article's item key, a hit's article and rule); asking for
parameter order instead made SQLAlchemy send the rows one statement each.
One INSERT per article and per hit was most of a feed poll's time
(bench/bench_feeds.py, issue #3). The decisions are the ones
``monitor.store.outbox`` documents, taken in the items' order, so a poll
gives the rows a poll of one item at a time would have given.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from sqlalchemy import Connection, bindparam
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from monitor.domain import Article, Hit, Match, Rule, delivery_id, snippet_around
from monitor.store.outbox import SUPPRESSED, StoryClusterer
from monitor.store.tables import (
    REALERT_WINDOW,
    ArticleRow,
    DeliveryRow,
    HitRow,
    SeenItemRow,
    StoryRow,
    StorySignatureRow,
)

# Built once: a statement built per call spent more time in SQLAlchemy's compile-cache
# key than in SQLite (py-spy, bench/bench_feeds.py).
_NEW_STORIES = sa_insert(StoryRow).returning(col(StoryRow.id), col(StoryRow.article_count))
_GROW_STORY = (
    sa_update(StoryRow)
    .where(col(StoryRow.id) == bindparam("story"))
    .values(article_count=col(StoryRow.article_count) + bindparam("more"))
)
_NEW_ARTICLES = sa_insert(ArticleRow).returning(col(ArticleRow.item_key), col(ArticleRow.id))
_NEW_HITS = sa_insert(HitRow).returning(col(HitRow.article_id), col(HitRow.rule_id), col(HitRow.id))
_NEW_DELIVERIES = sa_insert(DeliveryRow)
_NEW_SIGNATURES = sa_insert(StorySignatureRow)
_CHUNK = 300  # rows per IN (...) list: under SQLite's bound-parameter limit


def claim_items(connection: Connection, source_id: int, keys: list[str], now: datetime) -> set[str]:
    """Insert tombstones for ``keys``; return the keys that were new to this source."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return set()
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(SeenItemRow)
        .on_conflict_do_nothing(index_elements=["source_id", "item_key"])
        .returning(col(SeenItemRow.item_key))
    )
    rows = [{"source_id": source_id, "item_key": key, "first_seen_at": now} for key in unique]
    return set(connection.execute(statement, rows).scalars())


def insert_articles(
    connection: Connection,
    source_id: int,
    items: list[tuple[Article, tuple[Hit, ...]]],
    now: datetime,
    sinks_for: Callable[[Hit], Iterable[str]],
    stories: StoryClusterer | None,
    signatures: Mapping[str, bytes],
) -> list[int]:
    """Store new articles with their stories, hits and deliveries; return the article ids.

    ``signatures``: story notes (``monitor.stories.story_note``) or signatures already
    made for some articles, by item key.
    """
    story_ids, made, older = _stories(connection, source_id, items, now, stories, signatures)
    rows = [
        {
            "source_id": source_id, "item_key": article.item_key, "title": article.title,
            "body": article.body, "url": article.url, "path": article.path,
            "published_at": article.published_at, "fetched_at": article.fetched_at,
            "content_hash": article.content_hash, "story_id": story_id,
        }
        for (article, _), story_id in zip(items, story_ids, strict=True)
    ]  # fmt: skip
    ids_by_key = {key: id_ for key, id_ in connection.execute(_NEW_ARTICLES, rows)}
    article_ids = _ids(ids_by_key[article.item_key] for article, _ in items)
    if stories is not None:
        signature_rows = [
            {"article_id": article_id, "story_id": story_id, "signature": signature}
            for article_id, story_id, signature in zip(article_ids, story_ids, made, strict=True)
        ]
        connection.execute(_NEW_SIGNATURES, signature_rows)
    hits = [
        (hit, article, article_id, story_id)
        for (article, article_hits), article_id, story_id in zip(
            items, article_ids, story_ids, strict=True
        )
        for hit in article_hits
    ]
    if hits:
        _insert_hits(connection, hits, now, sinks_for, older)
    return article_ids


def _stories(
    connection: Connection,
    source_id: int,
    items: list[tuple[Article, tuple[Hit, ...]]],
    now: datetime,
    stories: StoryClusterer | None,
    known: Mapping[str, bytes],
) -> tuple[list[int], list[bytes], set[int]]:
    """Each article's story id (a stored story it is a near-duplicate of, or a new one) and
    signature, and which of those stories were stored before this poll.

    The index sees the poll's articles in order, so a later copy joins the story
    of an earlier one in the same poll (under a placeholder id, below zero, until
    the new stories are inserted). A story pruned by retention while still in the
    index starts anew, with this poll's copies of it.
    """
    found: list[int] = []
    signatures: list[bytes] = []
    placeholders = 0
    for article, _ in items:
        story, note = (
            stories.assign(article.text, known.get(article.item_key))
            if stories is not None
            else (None, b"")
        )
        if story is None:
            placeholders += 1
            story = -placeholders
        found.append(story)
        if stories is not None:
            signatures.append(stories.stored(note))
            stories.remember(f"s{source_id}:{article.item_key}", story, note)
    stored = {story for story in found if story > 0}
    alive = _existing_stories(connection, stored)
    renamed = {gone: -n for n, gone in enumerate(sorted(stored - alive), start=placeholders + 1)}
    found = [renamed.get(story, story) for story in found]
    sizes = Counter(found)
    new = sorted((p for p in sizes if p < 0), reverse=True)  # -1, -2, ...: first seen first
    ids: dict[int, int] = {}
    if new:
        rows = [{"created_at": now, "article_count": sizes[p]} for p in new]
        # New stories differ only in their size: any row of the right size will do.
        by_size: dict[int, list[int]] = {}
        for id_, size in connection.execute(_NEW_STORIES, rows):
            by_size.setdefault(size, []).extend(_ids([id_]))
        ids = {p: by_size[sizes[p]].pop() for p in new}
    grown = [{"story": story, "more": sizes[story]} for story in sorted(alive)]
    if grown:
        connection.execute(_GROW_STORY, grown)
    if stories is not None:
        stories.settle({**ids, **{gone: ids[p] for gone, p in renamed.items()}})
    return [ids.get(story, story) for story in found], signatures, alive


def _ids(returned: Iterable[int | None]) -> list[int]:
    """The ids an INSERT ... RETURNING gave (the columns are typed Optional for the ORM)."""
    ids = list(returned)
    assert None not in ids
    return ids  # type: ignore[return-value]


def _existing_stories(connection: Connection, story_ids: set[int]) -> set[int]:
    ordered, alive = sorted(story_ids), set[int]()
    for i in range(0, len(ordered), _CHUNK):
        query = sa_select(col(StoryRow.id)).where(col(StoryRow.id).in_(ordered[i : i + _CHUNK]))
        alive.update(_ids(connection.execute(query).scalars()))
    return alive


def _insert_hits(
    connection: Connection,
    hits: list[tuple[Hit, Article, int, int]],
    now: datetime,
    sinks_for: Callable[[Hit], Iterable[str]],
    older: set[int],
) -> None:
    """Hits with their deliveries, each suppressed or pending as ``outbox`` decides.

    Only ``older`` stories (stored before this poll) can have stored hits to look up.
    """
    rules = {hit.rule.id: hit.rule for hit, *_ in hits}
    alerted = _alerted(connection, set(rules), {story for *_, story in hits if story in older})
    recent = {
        rule_id for rule_id, rule in rules.items() if _alerted_recently(connection, rule, now)
    }
    rows, sinks_per_hit, reasons = [], [], []
    for hit, article, article_id, story_id in hits:
        rule = hit.rule
        reason = None
        if (rule.id, story_id) in alerted:
            reason = "story_already_alerted"
        elif rule.realert is not None and rule.id in recent:
            reason = REALERT_WINDOW
        sinks = list(sinks_for(hit))
        alerted.add((rule.id, story_id))
        if reason is None and sinks and rule.realert is not None:
            recent.add(rule.id)  # this poll's own alert opens the window
        first = hit.matches[0] if hit.matches else Match(0, 0, "")
        text = article.text
        lo, hi = snippet_around(text, first.start, first.end)
        rows.append({
            "rule_id": rule.id, "article_id": article_id, "story_id": story_id,
            "matches": json.dumps([m.__dict__ for m in hit.matches]),
            "snippet": text[lo:hi], "created_at": now,
        })  # fmt: skip
        sinks_per_hit.append((hit, article, sinks))
        reasons.append(reason)
    returned = connection.execute(_NEW_HITS, rows)
    ids_by_hit = {(article_id, rule_id): id_ for article_id, rule_id, id_ in returned}
    hit_ids = _ids(ids_by_hit[article_id, hit.rule.id] for hit, _, article_id, _ in hits)
    deliveries = [
        {
            "id": delivery_id(hit.rule.id, article.source, article.item_key, sink),
            "hit_id": hit_id, "sink": sink,
            "status": SUPPRESSED if reason else "pending", "attempts": 0,
            "last_error": reason, "next_attempt_at": None if reason else now,
            "created_at": now, "lease_token": 0,
        }
        for hit_id, (hit, article, sinks), reason in zip(hit_ids, sinks_per_hit, reasons,
                                                         strict=True)
        for sink in sinks
    ]  # fmt: skip
    if deliveries:
        connection.execute(_NEW_DELIVERIES, deliveries)


def _alerted(
    connection: Connection, rule_ids: set[str], story_ids: set[int]
) -> set[tuple[str, int]]:
    """(rule, story) pairs with a stored hit: the rule has already seen that story
    (index ix_hits_story_rule)."""
    ordered, found = sorted(story_ids), set[tuple[str, int]]()
    for i in range(0, len(ordered), _CHUNK):
        query = sa_select(col(HitRow.rule_id), col(HitRow.story_id)).where(
            col(HitRow.story_id).in_(ordered[i : i + _CHUNK])
        )
        found.update(
            (rule_id, story_id)
            for rule_id, story_id in connection.execute(query)
            if rule_id in rule_ids and story_id is not None
        )
    return found


def _alerted_recently(connection: Connection, rule: Rule, now: datetime) -> bool:
    """A ``realert`` rule sent (or is sending) an alert within its window."""
    if rule.realert is None:
        return False
    query = (
        sa_select(col(DeliveryRow.id))
        .join(HitRow, col(HitRow.id) == col(DeliveryRow.hit_id))
        .where(col(HitRow.rule_id) == rule.id)
        .where(col(DeliveryRow.status) != SUPPRESSED)
        .where(col(DeliveryRow.created_at) > now - rule.realert)
        .limit(1)
    )
    return connection.execute(query).first() is not None
