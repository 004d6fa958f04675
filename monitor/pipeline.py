"""The one place that knows the order of the flow:

    claim due source -> articles -> (drop known items) -> match
      -> store (one fenced transaction) -> deliver

Each step lives in its own module and knows nothing of the others. Every
replica runs this same loop: a source is polled only by the replica that
claimed its lease, and the poll's results are written only while that lease
still holds (``monitor.store.leases``). An expected per-source error
(``SourceError``) is recorded on the source and the loop goes on; any other
exception is a bug and propagates to the tick, which logs it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor import metrics, schedule
from monitor.chores import SILENCE_SOURCE, SILENT_RULE_ID, Chores, silence_rule
from monitor.config import Config
from monitor.crash import crash_point
from monitor.deliver import Deliverer, DeliveryReport
from monitor.domain import Article, Hit, PollOutcome, utcnow
from monitor.errors import FetchError, LeaseLost, SourceError
from monitor.forms import release_lexicons
from monitor.match import Matcher
from monitor.rarity import release_tables
from monitor.sinks import Sink
from monitor.sources.feed import FeedReader
from monitor.sources.fetch import Resolver, system_resolve
from monitor.sources.folder import FolderScanner
from monitor.sources.fulltext import add_full_text
from monitor.store import Store
from monitor.store.database import retry_transient
from monitor.store.leases import Claim, claim_sources
from monitor.stories import StoryIndex
from monitor.wiring import (
    bound_malloc_arenas,
    build_reader,
    build_sinks,
    sink_policies,
    stored_word_frequencies,
)

log = logging.getLogger("monitor.pipeline")


def default_owner() -> str:
    """This process's name in lease and heartbeat rows: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class PollSummary:
    source: str
    new_articles: int = 0
    hits: int = 0
    error: str | None = None
    waiting: list[str] = field(default_factory=list)


class Pipeline:
    """Polls sources, matches, stores and delivers, for one config and one store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        sinks: Mapping[str, Sink],
        clock: Callable[[], datetime] = utcnow,
        resolve: Resolver = system_resolve,
        owner: str | None = None,
    ):
        bound_malloc_arenas()  # before any poll thread exists (monitor.wiring says why)
        self.store = store
        self.clock = clock
        self.owner = owner or default_owner()
        self._resolve = resolve
        self._reader: FeedReader | None = None  # started on the first feed poll
        self._retired: list[FeedReader] = []  # readers of an older config, closed when idle
        self._workers: ThreadPoolExecutor | None = None
        self._in_flight: dict[str, Future[PollSummary]] = {}
        self._lock = threading.Lock()
        # One poll transaction at a time: SQLite has a single writer anyway, and queueing
        # here rather than in busy_timeout keeps 20 poll threads from timing each other out.
        self._write_lock = threading.Lock()
        # Matching, the CPU-bound part of a poll, one poll at a time: the threads share
        # one GIL anyway, and 20 of them matching at once kept the one holding the write
        # lock waiting for the GIL (a lock convoy) and starved the fetch loop: 35 ms a poll
        # against 18 (bench/bench_feeds.py, issue #3). Not held while storing: one poll
        # is matched while the one before it waits on SQLite (its statements, the fsync).
        self._matching = threading.Lock()
        self.scanners: dict[str, FolderScanner] = {}
        self.chores = Chores(store, self.owner)
        self._configure(config, sinks)
        # Near-duplicate index, rebuilt from the stored signatures (one alert per story).
        self.stories = StoryIndex()
        self.stories.load(store.story_signatures(newest=self.stories.capacity))

    def _configure(self, config: Config, sinks: Mapping[str, Sink]) -> None:
        self.config = config
        self.sinks = sinks
        # Keys priced by the words of recently stored articles, refreshed at each reload.
        self.matcher = Matcher(config.rules, config.queries, nlp_model=config.nlp_model,
                               languages=config.languages,
                               documents=stored_word_frequencies(self.store))  # fmt: skip
        # The word-form lexicons and word-frequency tables serve compiling rules only: a
        # daemon that runs for months need not keep their ~100 MiB (a reload loads them).
        release_lexicons()
        release_tables()
        self.rules = {rule.id: rule for rule in config.rules}
        self.rules[SILENT_RULE_ID] = silence_rule(config)
        # A folder whose settings did not change keeps its scanner (and what it has seen).
        self.scanners = {
            f.name: self._same_scanner(f.name, f.path, f.patterns, f.max_file_size)
            or FolderScanner(f.name, f.path, f.patterns, max_bytes=f.max_file_size)
            for f in config.folders
        }
        self.feeds = {f.name: f for f in config.feeds}
        sources = [(f.name, "folder", str(f.path)) for f in config.folders]
        sources += [(f.name, "feed", f.url) for f in config.feeds]
        sources += [(SILENCE_SOURCE, "internal", "")]  # never polled: not a configured name
        self.store.sync_sources(sources, self.clock())
        self.deliverer = Deliverer(
            self.store, sinks, self.rules, sink_policies(config), owner=self.owner
        )

    def _same_scanner(self, name: str, *settings: object) -> FolderScanner | None:
        old = self.scanners.get(name)
        if old and (old.path, old.patterns, old.max_bytes) == settings:
            return old
        return None

    def reload(self, config: Config) -> None:
        """Swap in a new, already validated config between ticks (hot reload)."""
        old_deliverer, old_fetch = self.deliverer, self.config.fetch
        self._configure(config, build_sinks(config))
        old_deliverer.close()  # lets in-flight sends finish and record their outcome
        with self._lock:
            if self._reader is not None and config.fetch != old_fetch:
                self._retired.append(self._reader)  # polls in flight still use it
                self._reader = None

    # --- polling ------------------------------------------------------------------

    def poll_due(self, wait_for_feeds: bool = False) -> list[PollSummary]:
        """Claim the sources that are due and poll them.

        Folders are scanned here; feeds go to the worker pool so that a slow feed
        never delays the others or the next tick. Only as many feeds are claimed
        as there are idle workers, so no lease runs out while its feed waits in a
        queue. Returns the polls that finished (all of them with ``wait_for_feeds``).
        """
        with self._lock:
            idle = max(0, self.config.fetch.concurrency - len(self._in_flight))
            # Never claim a feed we are still polling: after a freeze (SIGSTOP) our own lease
            # has expired, and a re-claim here would bump the token, fence off the running
            # poll, and leave the new lease renewed forever with no poll behind it.
            names = [n for n in self.config.source_names if n not in self._in_flight]
        claims = claim_sources(
            self.store,
            self.owner,
            self.clock(),
            names,
            limit=idle + len(self.scanners),
            reclaim_own=True,
        )
        summaries = self._dispatch(claims)
        return summaries + self._finished_feeds(wait_for_feeds)

    def poll_all(self, settle_seconds: float = 10.0) -> list[PollSummary]:
        """Poll every source once (``run --once``), letting half-written files settle first."""
        names = self.config.source_names
        claims = claim_sources(
            self.store, self.owner, self.clock(), names, limit=len(names), due_only=False
        )
        summaries = self._dispatch(claims) + self._finished_feeds(wait_for_all=True)
        deadline = time.monotonic() + settle_seconds
        waiting = [s.source for s in summaries if s.waiting]
        while waiting and time.monotonic() < deadline:
            time.sleep(0.2)  # a file still being written: give its writer the quiet period
            claims = claim_sources(
                self.store, self.owner, self.clock(), waiting, limit=len(waiting), due_only=False
            )
            again = self._dispatch(claims)
            summaries += again
            waiting = [s.source for s in again if s.waiting]
        return summaries

    def _dispatch(self, claims: list[Claim]) -> list[PollSummary]:
        summaries = []
        for claim in claims:
            if claim.taken_over_from:
                metrics.lease_takeovers.labels(kind="source").inc()
                log.info("lease taken over source=%s from=%s", claim.key, claim.taken_over_from)
            if claim.key in self.feeds:
                self._submit(claim)
            else:
                summaries.append(self.poll_folder(claim))
        return summaries

    def poll_folder(self, claim: Claim) -> PollSummary:
        name, now = claim.key, self.clock()
        summary = PollSummary(name)
        try:
            result = self.scanners[name].scan(now.timestamp())
        except SourceError as e:
            return self._record_error(summary, claim, e, now)
        summary.waiting = result.waiting
        fresh = self._fresh(name, result.articles)  # a read: not under the matching lock
        with self._matching:
            matched = self._matched(fresh)
        outcome = PollOutcome(source=name, articles=matched, next_poll_at=now + self.interval(name))
        return self._finish(summary, outcome, now, claim, "ok")

    def poll_feed(self, claim: Claim) -> PollSummary:
        """Fetch, parse, match and store one feed; a feed error is recorded, never raised."""
        name, feed, now = claim.key, self.feeds[claim.key], self.clock()
        summary = PollSummary(name)
        try:
            read = self.reader().read(
                name, feed.url, now, etag=claim.etag, last_modified=claim.last_modified,
                allow_private=feed.allow_private,
            )  # fmt: skip
        except SourceError as e:
            return self._record_error(summary, claim, e, now)
        crash_point("after_fetch")
        fetch = self.config.fetch
        interval = feed.interval or schedule.adaptive_interval(
            (a.published_at for a in read.articles if a.published_at),
            now, fetch.min_interval, self.config.interval,
        )  # fmt: skip
        delay = schedule.feed_delay(interval, [read.hint], fetch.min_interval, fetch.max_interval)
        fresh = self._fresh(name, list(read.articles))
        signatures = read.annotations
        if feed.full_text:  # only new items' pages: a known item is never fetched again
            fresh = add_full_text(
                self.reader().fetcher, name, fresh, allow_private=feed.allow_private
            )
            signatures = {}  # made on the summaries: the pages' text needs its own
        status = "not_modified" if read.not_modified else "ok"
        with self._matching:
            matched = self._matched(fresh)
        outcome = PollOutcome(
            source=name, articles=matched, etag=read.etag, last_modified=read.last_modified,
            next_poll_at=now + delay, signatures=signatures,
        )  # fmt: skip
        return self._finish(summary, outcome, now, claim, status)

    def _finish(
        self, summary: PollSummary, outcome: PollOutcome, now: datetime, claim: Claim, status: str
    ) -> PollSummary:
        stored = self._save(outcome, now, claim)
        summary.new_articles = len(stored)
        summary.hits = sum(len(hits) for _, hits in outcome.articles) if stored else 0
        metrics.polls.labels(source=summary.source, outcome=status).inc()
        if stored:
            metrics.articles.labels(source=summary.source).inc(len(stored))
            for _, hits in outcome.articles:
                for hit in hits:
                    metrics.hits.labels(rule=hit.rule.id).inc()
            log.info("poll source=%s status=%s new=%d hits=%d next=%s", summary.source, status,
                     len(stored), summary.hits, outcome.next_poll_at)  # fmt: skip
        return summary

    def _record_error(
        self, summary: PollSummary, claim: Claim, e: SourceError, now: datetime
    ) -> PollSummary:
        summary.error = f"{e.reason}: {e.detail}" if e.detail else e.reason
        errors = claim.errors + 1
        status_code = e.status_code if isinstance(e, FetchError) else None
        hint = schedule.parse_retry_after(e.retry_after, now) if isinstance(e, FetchError) else None
        delay = schedule.delay_after_error(
            errors, self.interval(summary.source), hint, gone=status_code == 410
        )
        log.warning("poll failed source=%s errors=%d reason=%r next_in=%s",
                    summary.source, errors, summary.error, delay)  # fmt: skip
        outcome = PollOutcome(
            source=summary.source, error=summary.error, next_poll_at=now + delay,
            status=schedule.feed_status(errors, status_code), consecutive_errors=errors,
        )  # fmt: skip
        self._save(outcome, now, claim)
        metrics.polls.labels(source=summary.source, outcome="error").inc()
        return summary

    def _fresh(self, name: str, articles: list[Article]) -> list[Article]:
        """The articles whose keys (and alternative keys) were never seen."""
        keys = [k for a in articles for k in (a.item_key, *a.alt_keys)]
        known = self.store.known_keys(name, keys)
        return _unique(
            a for a in articles
            if a.item_key not in known and not any(k in known for k in a.alt_keys)
        )  # fmt: skip

    def _matched(self, articles: list[Article]) -> tuple[tuple[Article, tuple[Hit, ...]], ...]:
        return tuple((article, tuple(self.matcher.match(article))) for article in articles)

    def _save(self, outcome: PollOutcome, now: datetime, claim: Claim | None = None) -> list[int]:
        """The poll's one transaction, fenced by the claim's lease; then after_commit."""
        lease = (self.owner, claim.token) if claim else None

        def save() -> list[int]:
            try:
                return self.store.save_poll(outcome, now, self.sinks_for, self.stories, lease=lease)
            except LeaseLost:
                raise
            except Exception:
                self._reload_stories()  # the rolled-back attempt may have taught it signatures
                raise

        with self._write_lock:
            try:
                # A lock held elsewhere, a full disk, a restarting server: try again shortly.
                stored = retry_transient(save, what=f"poll source={outcome.source}")
            except LeaseLost as e:
                metrics.fencing_rejections.labels(kind="source").inc()
                log.warning("lease lost source=%s detail=%r: poll discarded", outcome.source,
                            str(e))  # fmt: skip
                self._reload_stories()
                return []
        crash_point("after_commit")
        return stored

    def _reload_stories(self) -> None:
        """The transaction rolled back: the in-memory index may hold signatures it never
        stored, so rebuild it from the database before anything else is clustered."""
        self.stories = StoryIndex()
        self.stories.load(self.store.story_signatures(newest=self.stories.capacity))

    # --- feeds: fetched concurrently, each stored in its own transaction ------------

    def _submit(self, claim: Claim) -> None:
        with self._lock:
            if claim.key in self._in_flight:
                return  # still being fetched from an earlier tick
            if self._workers is None:
                size = self.config.fetch.concurrency
                self._workers = ThreadPoolExecutor(max_workers=size, thread_name_prefix="poll")
            self._in_flight[claim.key] = self._workers.submit(self.poll_feed, claim)

    def _finished_feeds(self, wait_for_all: bool) -> list[PollSummary]:
        with self._lock:
            futures = dict(self._in_flight)
        if wait_for_all:
            wait(futures.values())
        done = {name: f for name, f in futures.items() if f.done()}
        with self._lock:
            for name in done:
                self._in_flight.pop(name, None)
            retired = self._retired if not self._in_flight else []
            self._retired = [] if retired else self._retired
        for reader in retired:
            _close_reader(reader)
        return [f.result() for f in done.values()]

    def reader(self) -> FeedReader:
        with self._lock:
            if self._reader is None:
                self._reader = build_reader(self.config, self._resolve)
            return self._reader

    def interval(self, name: str) -> timedelta:
        for folder in self.config.folders:
            if folder.name == name:
                return folder.interval
        feed = self.feeds.get(name)
        return (feed.interval if feed else None) or self.config.interval

    def sinks_for(self, hit: Hit) -> tuple[str, ...]:
        return hit.rule.notify

    def run_chores(self) -> None:
        """Retention and silence alerts, on whichever replica leads the chores."""
        self.chores.run(self.config, self.clock(), self.sinks_for)

    # --- delivering -------------------------------------------------------------

    def deliver_due(self, *, wait: bool = True) -> DeliveryReport:
        return self.deliverer.deliver_due(self.clock(), wait=wait)

    def digests(self) -> dict[str, tuple[str, str]]:
        """Digest sinks: name -> (cron expression, time zone), for the daemon's cron jobs."""
        return {s.name: (s.digest, s.timezone) for s in self.config.sinks if s.digest}

    def send_digest(self, sink: str) -> DeliveryReport:
        return self.deliverer.send_digest(sink, self.clock())

    def close(self) -> None:
        """Let in-flight sends finish and record their outcome; stop the poll threads, the
        fetch client and the parse workers."""
        self.deliverer.close()
        if self._workers is not None:
            self._workers.shutdown(wait=True)
        for reader in [*self._retired, *([self._reader] if self._reader else [])]:
            _close_reader(reader)


def _close_reader(reader: FeedReader) -> None:
    reader.fetcher.close()
    reader.parser.close()


def _unique(articles: Iterable[Article]) -> list[Article]:
    """Drop repeats of one item key within a poll (a JSON file may hold a copy twice)."""
    seen: set[str] = set()
    out = []
    for article in articles:
        if article.item_key not in seen:
            seen.add(article.item_key)
            out.append(article)
    return out
