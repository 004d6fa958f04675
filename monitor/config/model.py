"""The validated config: frozen dataclasses, and the constants the checks use."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from monitor.domain import Entity, Rule
from monitor.query import Query

MAX_CONFIG_BYTES = 1024 * 1024
DEFAULT_CONFIG = Path("config/monitor.yaml")
ID_PATTERN = re.compile(r"^[a-z0-9_-]+$")
SINK_TYPES = ("console", "webhook", "slack", "discord")
DEFAULT_PATTERNS = ("*.txt", "*.md", "*.html", "*.json")
# Silence alerts are monitor's own hits: rule "source-silent", stored under source "monitor".
RESERVED_RULE_IDS = frozenset({"source-silent"})
RESERVED_SOURCE_NAMES = frozenset({"monitor"})
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str
    interval: timedelta | None  # None: adaptive within [fetch.min_interval, defaults.interval]
    allow_private: bool | None = None  # None: fetch.allow_private_networks decides
    full_text: bool = False  # fetch each new item's page for its main text (issue #3 item 6)
    language: str | None = None  # its articles' language; None: told by their script


@dataclass(frozen=True)
class FolderConfig:
    name: str
    path: Path
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    interval: timedelta = timedelta(seconds=1)
    max_file_size: int = 5 * 1024 * 1024
    language: str | None = None  # its articles' language; None: told by their script


@dataclass(frozen=True)
class SinkConfig:
    name: str
    type: str
    url: str | None = None
    # Signing secrets, newest first; two during a rotation. Never printed or logged.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # Delivery (issue #4): retry delays after the first attempt (None: the default schedule),
    # HTTP timeout, digest cron and its timezone, minimum gap between sends, SSRF opt-in.
    retry: tuple[timedelta, ...] | None = None
    timeout: timedelta = timedelta(seconds=15)
    digest: str | None = None
    timezone: str = "UTC"
    min_interval: timedelta | None = None
    allow_private_networks: bool = False

    @property
    def secret(self) -> str | None:
        return self.secrets[0] if self.secrets else None


@dataclass(frozen=True)
class FetchConfig:
    timeout: timedelta = timedelta(seconds=30)
    max_bytes: int = 10 * 1024 * 1024
    allow_private_networks: bool = False
    connect_timeout: timedelta = timedelta(seconds=10)
    read_timeout: timedelta = timedelta(seconds=10)
    parse_timeout: timedelta = timedelta(seconds=10)
    parse_memory: int = 512 * 1024 * 1024
    concurrency: int = 20
    per_host: int = 2
    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class Config:
    path: Path
    database_url: str
    feeds: tuple[FeedConfig, ...]
    folders: tuple[FolderConfig, ...]
    sinks: tuple[SinkConfig, ...]
    interval: timedelta
    notify: tuple[str, ...]
    fetch: FetchConfig
    nlp_model: str | None
    http_listen: str | None
    entities: dict[str, Entity]
    rules: tuple[Rule, ...]
    queries: dict[str, Query]  # rule id -> parsed query
    digest: str  # hash of every file read, so replicas can compare configs
    retention_articles: timedelta = timedelta(days=90)  # articles without hits, then pruned
    # The dashboard's bearer token (issue #8): required when http.listen is not loopback.
    http_token: str | None = field(default=None, repr=False)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.feeds) + tuple(f.name for f in self.folders)

    @property
    def languages(self) -> dict[str, str]:
        """Source name -> the language its ``language:`` setting gives, for those that have one."""
        sources: list[FeedConfig | FolderConfig] = [*self.feeds, *self.folders]
        return {s.name: s.language for s in sources if s.language is not None}

    def sink(self, name: str) -> SinkConfig:
        return next(s for s in self.sinks if s.name == name)
