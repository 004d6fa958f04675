"""The one place that knows the order of the flow:

    source -> articles -> (drop known items) -> match -> store (one transaction) -> deliver

Each step lives in its own module and knows nothing of the others. An
expected per-source error (``SourceError``) is recorded on the source and the
loop goes on; any other exception is a bug and propagates to the tick, which
logs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor import schedule
from monitor.config import Config, SinkConfig
from monitor.crash import crash_point
from monitor.deliver import Deliverer, DeliveryReport, SinkPolicy
from monitor.domain import Article, Hit, PollOutcome, utcnow
from monitor.errors import SourceError
from monitor.match import Matcher
from monitor.sinks import Sink
from monitor.sinks.chat import DiscordSink, SlackSink
from monitor.sinks.console import ConsoleSink
from monitor.sinks.http import AlertClient
from monitor.sinks.webhook import WebhookSink
from monitor.sources.folder import FolderScanner
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

    # --- polling ------------------------------------------------------------------

    def poll_due(self) -> list[PollSummary]:
        """Poll every source the database says is due."""
        now = self.clock()
        due = self.store.due_sources(now, self.config.source_names)
        return [self.poll(row.name, row.consecutive_errors) for row in due]

    def poll_all(self, settle_seconds: float = 10.0) -> list[PollSummary]:
        """Poll every source once (``run --once``), letting half-written files settle first."""
        errors = {row.name: row.consecutive_errors for row in self.store.sources()}
        summaries = [self.poll(name, errors.get(name, 0)) for name in self.config.source_names]
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
            self.store.save_poll(outcome, now, self.sinks_for)
            return summary
        known = self.store.known_keys(name, (a.item_key for a in articles))
        fresh = _unique(a for a in articles if a.item_key not in known)
        matched = tuple((article, tuple(self.matcher.match(article))) for article in fresh)
        outcome = PollOutcome(
            source=name,
            articles=matched,
            next_poll_at=schedule.next_poll_after_success(now, self.interval(name)),
        )
        try:
            stored = self.store.save_poll(outcome, now, self.sinks_for, self.stories)
        except Exception:
            # The transaction rolled back: the in-memory index may hold signatures it never
            # stored, so rebuild it from the database before anything else is clustered.
            self.stories = StoryIndex()
            self.stories.load(self.store.story_signatures())
            raise
        crash_point("after_commit")
        summary.new_articles = len(stored)
        summary.hits = sum(len(hits) for _, hits in matched)
        if stored:
            log.info("poll source=%s new=%d hits=%d", name, len(stored), summary.hits)
        return summary

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
        """Let in-flight sends finish and record their outcome."""
        self.deliverer.close()


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
