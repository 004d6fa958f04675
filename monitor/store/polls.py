"""The bulk writes of a poll transaction: tombstones, stories, articles, hits, deliveries.

A poll's new items are written in a handful of statements, whatever their
number: one multi-row ``INSERT ... RETURNING`` per table, and the reads the
suppression rules need done once per poll. The statements go to the driver
as SQL text (``monitor.store.driversql``): as SQLAlchemy Core statements,
preparing ~270 rows cost more CPU than storing them (bench/bench_feeds.py,
issue #3). RETURNING gives rows in no promised order, so each row comes back
with its natural key (an article's item key, a hit's article and rule). The
decisions are the ones ``monitor.store.outbox`` documents, taken in the
items' order, so a poll gives the rows a poll of one item at a time would
have given.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import select as sa_select
from sqlmodel import col

from monitor.domain import Article, Hit, Match, Rule, delivery_id, snippet_around
from monitor.store.driversql import columns, driver, execute_many, insert, select_in
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

_SEEN = f"INSERT INTO seen_items ({columns(SeenItemRow, 'source_id', 'item_key', 'first_seen_at')})"
_NEW_STORIES = f"INSERT INTO stories ({columns(StoryRow, 'created_at', 'article_count')})"
_GROW_STORY = "UPDATE stories SET article_count = article_count + ? WHERE id = ?"
_EXISTING_STORIES = "SELECT id FROM stories WHERE id"
_NEW_ARTICLES = "INSERT INTO articles ({})".format(columns(
    ArticleRow, "source_id", "item_key", "title", "body", "url", "path", "published_at",
    "fetched_at", "content_hash", "story_id",
))  # fmt: skip
_NEW_SIGNATURES = "INSERT INTO story_signatures ({}) VALUES (?, ?, ?)".format(
    columns(StorySignatureRow, "article_id", "story_id", "signature")
)
_NEW_HITS = "INSERT INTO hits ({})".format(
    columns(HitRow, "rule_id", "article_id", "story_id", "matches", "snippet", "created_at")
)
_NEW_DELIVERIES = "INSERT INTO deliveries ({})".format(columns(
    DeliveryRow, "id", "hit_id", "sink", "status", "attempts", "last_error", "next_attempt_at",
    "created_at", "lease_token",
))  # fmt: skip
_ALERTED = "SELECT rule_id, story_id FROM hits WHERE story_id"  # index ix_hits_story_rule


def _times(connection: Connection) -> Callable[[datetime | None], Any]:
    """Datetimes as the driver stores them; a poll's many equal ones converted once."""
    convert, done = driver(connection).time, dict[datetime, Any]()

    def at(value: datetime | None) -> Any:
        if value is None:
            return None
        found = done.get(value)
        if found is None:
            found = done[value] = convert(value)
        return found

    return at


def claim_items(connection: Connection, source_id: int, keys: list[str], now: datetime) -> set[str]:
    """Insert tombstones for ``keys``; return the keys that were new to this source."""
    at = driver(connection).time(now)
    rows = [(source_id, key, at) for key in dict.fromkeys(keys)]
    tail = "ON CONFLICT (source_id, item_key) DO NOTHING RETURNING item_key"
    return {key for (key,) in insert(connection, _SEEN, rows, tail)}


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
    at = _times(connection)
    rows = [
        (
            source_id, article.item_key, article.title, article.body, article.url, article.path,
            at(article.published_at), at(article.fetched_at), article.content_hash, story_id,
        )
        for (article, _), story_id in zip(items, story_ids, strict=True)
    ]  # fmt: skip
    ids_by_key = dict(insert(connection, _NEW_ARTICLES, rows, "RETURNING item_key, id"))
    article_ids = [ids_by_key[article.item_key] for article, _ in items]
    if stories is not None:
        signature_rows = list(zip(article_ids, story_ids, made, strict=True))
        execute_many(connection, _NEW_SIGNATURES, signature_rows)
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
        at = driver(connection).time(now)
        rows = [(at, sizes[p]) for p in new]
        # New stories differ only in their size: any row of the right size will do.
        by_size: dict[int, list[int]] = {}
        for id_, size in insert(connection, _NEW_STORIES, rows, "RETURNING id, article_count"):
            by_size.setdefault(size, []).append(id_)
        ids = {p: by_size[sizes[p]].pop() for p in new}
    execute_many(connection, _GROW_STORY, [(sizes[story], story) for story in sorted(alive)])
    if stories is not None:
        stories.settle({**ids, **{gone: ids[p] for gone, p in renamed.items()}})
    return [ids.get(story, story) for story in found], signatures, alive


def _existing_stories(connection: Connection, story_ids: set[int]) -> set[int]:
    return {id_ for (id_,) in select_in(connection, _EXISTING_STORIES, (), sorted(story_ids))}


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
    at = driver(connection).time(now)
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
        matches = json.dumps([m.__dict__ for m in hit.matches])
        rows.append((rule.id, article_id, story_id, matches, text[lo:hi], at))
        sinks_per_hit.append((hit, article, sinks))
        reasons.append(reason)
    returned = insert(connection, _NEW_HITS, rows, "RETURNING article_id, rule_id, id")
    ids_by_hit = {(article_id, rule_id): id_ for article_id, rule_id, id_ in returned}
    hit_ids = [ids_by_hit[article_id, hit.rule.id] for hit, _, article_id, _ in hits]
    deliveries = [
        (
            delivery_id(hit.rule.id, article.source, article.item_key, sink), hit_id, sink,
            SUPPRESSED if reason else "pending", 0, reason, None if reason else at, at, 0,
        )
        for hit_id, (hit, article, sinks), reason in zip(hit_ids, sinks_per_hit, reasons,
                                                         strict=True)
        for sink in sinks
    ]  # fmt: skip
    insert(connection, _NEW_DELIVERIES, deliveries)


def _alerted(
    connection: Connection, rule_ids: set[str], story_ids: set[int]
) -> set[tuple[str, int]]:
    """(rule, story) pairs with a stored hit: the rule has already seen that story."""
    return {
        (rule_id, story_id)
        for rule_id, story_id in select_in(connection, _ALERTED, (), sorted(story_ids))
        if rule_id in rule_ids and story_id is not None
    }


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
