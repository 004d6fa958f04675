"""Build the steps' objects from a config: sinks, their delivery policies, the feed reader.

Sits beside the pipeline (it knows config and every step) so that the steps
themselves never import the config.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time

from monitor.config import Config, SinkConfig
from monitor.deliver import SinkPolicy
from monitor.rarity import DocumentFrequencies, document_frequencies
from monitor.sinks import Sink
from monitor.sinks.chat import DiscordSink, SlackSink
from monitor.sinks.console import ConsoleSink
from monitor.sinks.http import AlertClient
from monitor.sinks.webhook import WebhookSink
from monitor.sources.feed import FeedReader
from monitor.sources.fetch import Fetcher, FetchLimits, Resolver
from monitor.sources.parse import ParserPool
from monitor.store import Store
from monitor.stories import story_note

log = logging.getLogger("monitor.wiring")

# Stored articles whose words the presearch index prices its keys by (monitor.rarity): a
# few thousand tell a beat's common words from its rare ones, and read and tokenise in
# well under a second at start and at each reload.
WORD_SAMPLE = 3000


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


def stored_word_frequencies(store: Store, sample: int = WORD_SAMPLE) -> DocumentFrequencies:
    """The document frequencies of the ``sample`` newest stored articles' words."""
    started = time.perf_counter()
    found = document_frequencies(store.recent_texts(sample))
    log.info("word frequencies articles=%d words=%d seconds=%.2f", found.articles,
             len(found.counts), time.perf_counter() - started)  # fmt: skip
    return found


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


def build_reader(config: Config, resolve: Resolver) -> FeedReader:
    """The shared fetch client and parse workers, bounded by ``fetch.*``."""
    fetch = config.fetch
    limits = FetchLimits(
        timeout=fetch.timeout.total_seconds(),
        connect=fetch.connect_timeout.total_seconds(),
        read=fetch.read_timeout.total_seconds(),
        max_bytes=fetch.max_bytes,
        concurrency=fetch.concurrency,
        per_host=fetch.per_host,
    )
    fetcher = Fetcher(limits, allow_private=fetch.allow_private_networks, resolve=resolve)
    parser = ParserPool(
        parse_workers(os.cpu_count() or 2, len(config.feeds)),
        timeout=fetch.parse_timeout.total_seconds(),
        memory_bytes=fetch.parse_memory,
        annotate=story_note,  # story signatures are made beside parsing, off our GIL
    )
    return FeedReader(fetcher, parser)


def bound_malloc_arenas(arenas: int = 2) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas; True if it agreed.

    By default glibc gives busy threads arenas of their own (up to 8 per core), and
    each keeps what its thread freed: with 20 poll threads passing feed bodies around,
    that was ~30 MiB of the daemon's RSS, and peaks over 300 MiB (bench/bench_feeds.py,
    issue #3). Called before the poll threads start; a no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_arena_max = -8  # from glibc's malloc.h
    return bool(libc.mallopt(m_arena_max, arenas))


def parse_workers(cores: int, feeds: int) -> int:
    """Parse workers: at least 4 (or one per feed), so that hostile feeds holding a worker
    to the parse deadline cannot stall the rest. With one per core (2 here), two ReDoS
    feeds delayed every healthy parse by up to the deadline (tests/reliability isolation)."""
    return max(1, min(feeds, max(cores, 4)))


def _seconds(sink: SinkConfig) -> float | None:
    return sink.min_interval.total_seconds() if sink.min_interval is not None else None
