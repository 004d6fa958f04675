"""The one place that knows the order of the flow:

    source -> articles -> (drop known items) -> match -> store (one transaction) -> deliver

Each step lives in its own module and knows nothing of the others. An
expected per-source error (``SourceError``) is recorded on the source and the
loop goes on; any other exception is a bug and propagates to the tick, which
logs it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor import schedule
from monitor.config import Config, SinkConfig
from monitor.crash import crash_point
from monitor.deliver import Deliverer, DeliveryReport, SinkPolicy
from monitor.domain import Article, Hit, PollOutcome, utcnow
from monitor.errors import FetchError, SourceError
from monitor.match import Matcher
from monitor.sinks import Sink
from monitor.sinks.chat import DiscordSink, SlackSink
from monitor.sinks.console import ConsoleSink
from monitor.sinks.http import AlertClient
from monitor.sinks.webhook import WebhookSink
from monitor.sources.feed import FeedReader
from monitor.sources.fetch import Fetcher, FetchLimits, Resolver, system_resolve
from monitor.sources.folder import FolderScanner
from monitor.sources.parse import ParserPool
from monitor.store import Store
from monitor.stories import StoryIndex

log = logging.getLogger("monitor.pipeline")


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
    ):
        self.config = config
        self.store = store
        self.sinks = sinks
        self.clock = clock
        self.matcher = Matcher(config.rules, config.queries, nlp_model=config.nlp_model)
        self.rules = {rule.id: rule for rule in config.rules}
        self.scanners = {
            f.name: FolderScanner(f.name, f.path, f.patterns, max_bytes=f.max_file_size)
            for f in config.folders
        }
        sources = [(f.name, "folder", str(f.path)) for f in config.folders]
        sources += [(f.name, "feed", f.url) for f in config.feeds]
        store.sync_sources(sources, self.clock())
        # Near-duplicate index, rebuilt from the stored signatures (one alert per story).
        self.stories = StoryIndex()
        self.stories.load(store.story_signatures())
        self.deliverer = Deliverer(store, sinks, self.rules, sink_policies(config))
        self.feeds = {f.name: f for f in config.feeds}
        self._resolve = resolve
        self._reader: FeedReader | None = None  # started on the first feed poll
        self._workers: ThreadPoolExecutor | None = None
        self._in_flight: dict[str, Future[PollSummary]] = {}
        self._lock = threading.Lock()
        # One poll transaction at a time: SQLite has a single writer anyway, and queueing
        # here rather than in busy_timeout keeps 20 poll threads from timing each other out.
        self._write_lock = threading.Lock()

    # --- polling ------------------------------------------------------------------

    def poll_due(self, wait_for_feeds: bool = False) -> list[PollSummary]:
        """Poll every source the database says is due.

        Folders are scanned here; feeds are handed to the worker pool so that a
        slow feed never delays the others or the next tick. Returns the
        summaries of polls that finished (all of them with ``wait_for_feeds``).
        """
        now = self.clock()
        due = self.store.due_sources(now, self.config.source_names)
        summaries = [
            self.poll(r.name, r.consecutive_errors) for r in due if r.name not in self.feeds
        ]
        for row in due:
            if row.name in self.feeds:
                self._submit(row.name, row.consecutive_errors, row.etag, row.last_modified)
        return summaries + self._finished_feeds(wait_for_feeds)

    def poll_all(self, settle_seconds: float = 10.0) -> list[PollSummary]:
        """Poll every source once (``run --once``), letting half-written files settle first."""
        rows = {row.name: row for row in self.store.sources()}
        for name in self.feeds:
            row = rows.get(name)
            if row is not None:
                self._submit(name, row.consecutive_errors, row.etag, row.last_modified)
        summaries = [
            self.poll(name, rows[name].consecutive_errors if name in rows else 0)
            for name in self.config.source_names
            if name not in self.feeds
        ]
        summaries += self._finished_feeds(wait_for_all=True)
        deadline = time.monotonic() + settle_seconds
        waiting = [s for s in summaries if s.waiting]
        while waiting and time.monotonic() < deadline:
            time.sleep(0.2)  # a file still being written: give its writer the quiet period
            again = [self.poll(s.source, 0) for s in waiting]
            summaries += again
            waiting = [s for s in again if s.waiting]
        return summaries

    def poll(self, name: str, previous_errors: int = 0) -> PollSummary:
        now = self.clock()
        summary = PollSummary(name)
        try:
            articles, summary.waiting = self.collect(name, now)
        except SourceError as e:
            summary.error = f"{e.reason}: {e.detail}" if e.detail else e.reason
            errors = previous_errors + 1
            log.warning("poll failed source=%s errors=%d reason=%r", name, errors, summary.error)
            outcome = PollOutcome(
                source=name,
                error=summary.error,
                next_poll_at=schedule.next_poll_after_error(now, errors, self.interval(name)),
                status=schedule.status_for(errors),
                consecutive_errors=errors,
            )
            self._save(outcome, now)
            return summary
        known = self.store.known_keys(name, (a.item_key for a in articles))
        fresh = _unique(a for a in articles if a.item_key not in known)
        matched = tuple((article, tuple(self.matcher.match(article))) for article in fresh)
        outcome = PollOutcome(
            source=name,
            articles=matched,
            next_poll_at=schedule.next_poll_after_success(now, self.interval(name)),
        )
        stored = self._save(outcome, now)
        summary.new_articles = len(stored)
        summary.hits = sum(len(hits) for _, hits in matched)
        if stored:
            log.info("poll source=%s new=%d hits=%d", name, len(stored), summary.hits)
        return summary

    # --- feeds: fetched concurrently, each stored in its own transaction ------------

    def _submit(self, name: str, errors: int, etag: str | None, modified: str | None) -> None:
        with self._lock:
            if name in self._in_flight:
                return  # still being fetched from an earlier tick
            if self._workers is None:
                size = self.config.fetch.concurrency
                self._workers = ThreadPoolExecutor(max_workers=size, thread_name_prefix="poll")
            future = self._workers.submit(self.poll_feed, name, errors, etag, modified)
            self._in_flight[name] = future

    def _finished_feeds(self, wait_for_all: bool) -> list[PollSummary]:
        with self._lock:
            futures = dict(self._in_flight)
        if wait_for_all:
            wait(futures.values())
        done = {name: f for name, f in futures.items() if f.done()}
        with self._lock:
            for name in done:
                self._in_flight.pop(name, None)
        return [f.result() for f in done.values()]

    def reader(self) -> FeedReader:
        with self._lock:
            if self._reader is None:
                fetch = self.config.fetch
                limits = FetchLimits(
                    timeout=fetch.timeout.total_seconds(),
                    connect=fetch.connect_timeout.total_seconds(),
                    read=fetch.read_timeout.total_seconds(),
                    max_bytes=fetch.max_bytes,
                    concurrency=fetch.concurrency,
                    per_host=fetch.per_host,
                )
                fetcher = Fetcher(
                    limits, allow_private=fetch.allow_private_networks, resolve=self._resolve
                )
                parser = ParserPool(
                    min(os.cpu_count() or 2, len(self.feeds), 4),
                    timeout=fetch.parse_timeout.total_seconds(),
                    memory_bytes=fetch.parse_memory,
                )
                self._reader = FeedReader(fetcher, parser)
            return self._reader

    def poll_feed(
        self, name: str, errors: int = 0, etag: str | None = None, modified: str | None = None
    ) -> PollSummary:
        """Fetch, parse, match and store one feed; a feed error is recorded, never raised."""
        feed = self.feeds[name]
        now = self.clock()
        summary = PollSummary(name)
        try:
            read = self.reader().read(
                name, feed.url, now, etag=etag, last_modified=modified,
                allow_private=feed.allow_private,
            )  # fmt: skip
        except SourceError as e:
            return self._record_feed_error(summary, e, errors, now)
        fetch = self.config.fetch
        interval = feed.interval or schedule.adaptive_interval(
            (a.published_at for a in read.articles if a.published_at),
            now, fetch.min_interval, self.config.interval,
        )  # fmt: skip
        delay = schedule.feed_delay(interval, [read.hint], fetch.min_interval, fetch.max_interval)
        outcome_articles = self._match_fresh(name, list(read.articles))
        outcome = PollOutcome(
            source=name, articles=outcome_articles, etag=read.etag,
            last_modified=read.last_modified, next_poll_at=now + delay,
        )  # fmt: skip
        stored = self._save(outcome, now)
        summary.new_articles = len(stored)
        summary.hits = sum(len(hits) for _, hits in outcome_articles)
        status = "not_modified" if read.not_modified else "ok"
        log.info("poll source=%s status=%s new=%d hits=%d next_in=%s",
                 name, status, len(stored), summary.hits, delay)  # fmt: skip
        return summary

    def _record_feed_error(
        self, summary: PollSummary, e: SourceError, previous_errors: int, now: datetime
    ) -> PollSummary:
        summary.error = f"{e.reason}: {e.detail}" if e.detail else e.reason
        errors = previous_errors + 1
        status_code = e.status_code if isinstance(e, FetchError) else None
        hint = schedule.parse_retry_after(e.retry_after, now) if isinstance(e, FetchError) else None
        interval = self.feeds[summary.source].interval or self.config.interval
        delay = schedule.delay_after_error(errors, interval, hint)
        log.warning("poll failed source=%s errors=%d reason=%r next_in=%s",
                    summary.source, errors, summary.error, delay)  # fmt: skip
        outcome = PollOutcome(
            source=summary.source, error=summary.error, next_poll_at=now + delay,
            status=schedule.feed_status(errors, status_code), consecutive_errors=errors,
        )  # fmt: skip
        self._save(outcome, now)
        return summary

    def _match_fresh(
        self, name: str, articles: list[Article]
    ) -> tuple[tuple[Article, tuple[Hit, ...]], ...]:
        """Articles whose keys (and alternative keys) were never seen, with their hits."""
        keys = [k for a in articles for k in (a.item_key, *a.alt_keys)]
        known = self.store.known_keys(name, keys)
        fresh = _unique(
            a for a in articles
            if a.item_key not in known and not any(k in known for k in a.alt_keys)
        )  # fmt: skip
        return tuple((article, tuple(self.matcher.match(article))) for article in fresh)

    def _save(self, outcome: PollOutcome, now: datetime) -> list[int]:
        """The poll's one transaction (one writer at a time), then the after_commit crash point."""
        with self._write_lock:
            try:
                stored = self.store.save_poll(outcome, now, self.sinks_for, self.stories)
            except Exception:
                # The transaction rolled back: the in-memory index may hold signatures it never
                # stored, so rebuild it from the database before anything else is clustered.
                self.stories = StoryIndex()
                self.stories.load(self.store.story_signatures())
                raise
        crash_point("after_commit")
        return stored

    def collect(self, name: str, now: datetime) -> tuple[list[Article], list[str]]:
        """Articles the source offers now, and files still being written."""
        scanner = self.scanners.get(name)
        if scanner is None:
            raise SourceError(name, "not_supported", "feed polling is not available yet")
        result = scanner.scan(now.timestamp())
        return result.articles, result.waiting

    def interval(self, name: str) -> timedelta:
        for folder in self.config.folders:
            if folder.name == name:
                return folder.interval
        feed = next((f for f in self.config.feeds if f.name == name), None)
        return (feed.interval if feed else None) or self.config.interval

    def sinks_for(self, hit: Hit) -> tuple[str, ...]:
        return hit.rule.notify

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
        if self._reader is not None:
            self._reader.fetcher.close()
            self._reader.parser.close()


def build_sinks(config: Config, client: AlertClient | None = None) -> dict[str, Sink]:
    """One sink object per configured sink; the HTTP sinks share one client."""
    client = client or AlertClient()
    sinks: dict[str, Sink] = {}
    for sink in config.sinks:
        if sink.type == "console":
            sinks[sink.name] = ConsoleSink(sink.name)
        elif sink.type == "webhook" and sink.url:
            if not sink.secrets:
                log.warning("webhook sink is unsigned sink=%s (set its secret)", sink.name)
            sinks[sink.name] = WebhookSink(
                sink.name, sink.url, sink.secrets, client, timeout=sink.timeout.total_seconds(),
                allow_private=sink.allow_private_networks,
            )  # fmt: skip
        elif sink.url:
            chat = SlackSink if sink.type == "slack" else DiscordSink
            sinks[sink.name] = chat(
                sink.name, sink.url, client, timeout=sink.timeout.total_seconds(),
                allow_private=sink.allow_private_networks, min_interval=_seconds(sink),
            )  # fmt: skip
    return sinks


def sink_policies(config: Config) -> dict[str, SinkPolicy]:
    """Each sink's retry schedule, rate limit and digest flag, from its config."""
    policies = {}
    for sink in config.sinks:
        default = SinkPolicy()
        interval = _seconds(sink)
        if interval is None:
            interval = 1.0 if sink.type in ("slack", "discord") else 0.0
        policies[sink.name] = SinkPolicy(
            schedule=sink.retry if sink.retry is not None else default.schedule,
            min_interval=interval,
            digest=sink.digest is not None,
        )
    return policies


def _seconds(sink: SinkConfig) -> float | None:
    return sink.min_interval.total_seconds() if sink.min_interval is not None else None


def _unique(articles: Iterable[Article]) -> list[Article]:
    """Drop repeats of one item key within a poll (a JSON file may hold a copy twice)."""
    seen: set[str] = set()
    out = []
    for article in articles:
        if article.item_key not in seen:
            seen.add(article.item_key)
            out.append(article)
    return out
