"""Load and validate the config and its watchlists (contract 1 in DESIGN.md).

Everything is validated before anything runs: every problem is collected with
its file and place (``watchlists/korea.yaml: rules[2].query: column 17:
expected ')'``) and raised together as one ``ConfigError``. Unknown keys are
errors, YAML anchors and aliases are refused (an alias bomb of 317 bytes
expands to 43 M nodes), and files over 1 MiB are refused before reading.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import glob
import hashlib
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import yaml
from apscheduler.triggers.cron import CronTrigger

from monitor.domain import Entity, Example, Rule, Severity
from monitor.errors import ConfigError, Problem, QueryError
from monitor.query import Query, parse_query
from monitor.units import parse_duration, parse_size

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


@dataclass(frozen=True)
class FolderConfig:
    name: str
    path: Path
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    interval: timedelta = timedelta(seconds=1)
    max_file_size: int = 5 * 1024 * 1024


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

    def sink(self, name: str) -> SinkConfig:
        return next(s for s in self.sinks if s.name == name)


def config_path(arg: str | None) -> Path:
    """``--config``, else ``$MONITOR_CONFIG``, else ``config/monitor.yaml``."""
    return Path(arg or os.environ.get("MONITOR_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate ``path`` and its watchlists; raise ConfigError."""
    env = dict(os.environ) if env is None else env
    checker = _Checker(path.name, env)  # places are shown relative to the config folder
    raw = _read_yaml(path, checker)
    if not isinstance(raw, dict):
        if raw is not None or not checker.problems:
            checker.problem("", "the config must be a mapping of keys")
        raise ConfigError(checker.problems)
    return _Builder(path, raw, checker, env).build()


# --- reading --------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors and aliases (no alias bombs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise yaml.MarkedYAMLError(
                problem="YAML anchors and aliases are not allowed", problem_mark=mark
            )
        return super().compose_node(parent, index)


def _read_yaml(path: Path, checker: _Checker) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            checker.problem("", f"file is {size} bytes; the limit is 1 MiB")
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        checker.problem("", f"cannot read: {e}")
        return None
    checker.digest.update(text.encode())
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        checker.problem(place, f"invalid YAML: {e.problem}")
    except yaml.YAMLError as e:
        checker.problem("", f"invalid YAML: {e}")
    return None


# --- validation helpers -----------------------------------------------------------


class _Checker:
    """Collects problems for one file and interpolates ``${VAR}`` in its strings."""

    def __init__(self, file: str, env: dict[str, str], problems: list[Problem] | None = None):
        self.file = file
        self.env = env
        self.problems: list[Problem] = [] if problems is None else problems
        self.digest = hashlib.sha256()

    def for_file(self, file: str) -> _Checker:
        other = _Checker(file, self.env, self.problems)
        other.digest = self.digest
        return other

    def problem(self, place: str, message: str) -> None:
        self.problems.append(Problem(self.file, place, message))

    def mapping(self, value: Any, place: str, allowed: dict[str, bool]) -> dict[str, Any]:
        """Check a mapping's keys: ``allowed`` maps key -> required."""
        if not isinstance(value, dict):
            self.problem(place, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.problem(_join(place, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        for key, required in allowed.items():
            if required and value.get(key) is None:
                self.problem(_join(place, key), "required")
        return {k: v for k, v in value.items() if k in allowed}

    def string(self, value: Any, place: str, *, pattern: re.Pattern[str] | None = None) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(place, f"expected a string, got {_kind(value)}")
            return ""
        text = self.interpolate(str(value), place)
        if pattern and not pattern.match(text):
            self.problem(place, f"{text!r} must match {pattern.pattern}")
        return text

    def strings(self, value: Any, place: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.problem(place, f"expected a list, got {_kind(value)}")
            return ()
        return tuple(self.string(v, f"{place}[{i}]") for i, v in enumerate(value))

    def boolean(self, value: Any, place: str) -> bool:
        if isinstance(value, str):
            value = {"true": True, "false": False}.get(
                self.interpolate(value, place).lower(), value
            )
        if not isinstance(value, bool):
            self.problem(place, f"expected true or false, got {value!r}")
            return False
        return value

    def convert(self, value: Any, place: str, parse: Callable[[str], Any], default: Any) -> Any:
        """Parse a duration or size; a zero or negative value is an error."""
        try:
            result = parse(self.string(value, place))
        except ValueError as e:
            self.problem(place, str(e))
            return default
        if (result.total_seconds() if isinstance(result, timedelta) else result) <= 0:
            self.problem(place, f"must be greater than zero, got {value!r}")
            return default
        return result

    def interpolate(self, text: str, place: str) -> str:
        def replace(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(place, f"environment variable {name} is not set")
            return ""

        return _VAR.sub(replace, text)


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _items(checker: _Checker, value: Any, place: str) -> Iterator[tuple[str, Any]]:
    if value is None:
        return
    if not isinstance(value, list):
        checker.problem(place, f"expected a list, got {_kind(value)}")
        return
    for i, item in enumerate(value):
        yield f"{place}[{i}]", item


# --- the config file ---------------------------------------------------------------


class _Builder:
    """Turns the raw YAML of monitor.yaml (and its watchlists) into a Config."""

    TOP: ClassVar[dict[str, bool]] = {
        "database": False, "watchlists": False, "sources": False, "sinks": False,
        "defaults": False, "fetch": False, "nlp": False, "http": False, "retention": False,
    }  # fmt: skip

    def __init__(self, path: Path, raw: dict[str, Any], checker: _Checker, env: dict[str, str]):
        self.path = path
        self.base = path.parent
        self.raw = raw
        self.c = checker
        self.env = env

    def build(self) -> Config:
        c = self.c
        raw = c.mapping(self.raw, "", self.TOP)
        defaults = c.mapping(
            raw.get("defaults") or {}, "defaults", {"interval": False, "notify": False}
        )
        interval = c.convert(
            defaults.get("interval", "15m"),
            "defaults.interval",
            parse_duration,
            timedelta(minutes=15),
        )
        notify = c.strings(defaults.get("notify", ["console"]), "defaults.notify")
        sinks = self.sinks(raw.get("sinks"))
        feeds, folders = self.sources(raw.get("sources") or {})
        fetch = self.fetch(raw.get("fetch") or {})
        nlp = c.mapping(raw.get("nlp") or {}, "nlp", {"model": False})
        http = c.mapping(raw.get("http") or {}, "http", {"listen": False, "token": False})
        listen = c.string(http["listen"], "http.listen") if http.get("listen") else None
        if listen and not re.match(r"^[\w.\-\[\]:]*:\d{1,5}$", listen):
            c.problem("http.listen", f"expected host:port, got {listen!r}")
        token = _http_token(c, http.get("token"), listen)
        sink_names = {s.name for s in sinks}
        for i, name in enumerate(notify):
            if name not in sink_names:
                c.problem(f"defaults.notify[{i}]", f"unknown sink {name!r}")
        source_names = {f.name for f in feeds} | {f.name for f in folders}
        entities, rules, queries = _load_watchlists(
            self, raw.get("watchlists", ["watchlists/*.yaml"]), notify, sink_names, source_names
        )
        retention = c.mapping(raw.get("retention") or {}, "retention", {"articles": False})
        keep = c.convert(
            retention.get("articles", "90d"), "retention.articles", parse_duration,
            timedelta(days=90),
        )  # fmt: skip
        for rule in rules:
            if rule.id in RESERVED_RULE_IDS:
                c.for_file(rule.file).problem(
                    "rules", f"rule id {rule.id!r} is reserved for monitor's own alerts"
                )
        if c.problems:
            raise ConfigError(c.problems)
        return Config(
            path=self.path,
            database_url=self.database_url(raw.get("database")),
            feeds=feeds,
            folders=folders,
            sinks=sinks,
            interval=interval,
            notify=notify,
            fetch=fetch,
            nlp_model=c.string(nlp["model"], "nlp.model") if nlp.get("model") else None,
            http_listen=listen,
            http_token=token,
            entities=entities,
            rules=rules,
            queries=queries,
            digest=c.digest.hexdigest()[:16],
            retention_articles=keep,
        )

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path

    def database_url(self, value: Any) -> str:
        url = self.env.get("DATABASE_URL") or (
            self.c.string(value, "database") if value else "sqlite:///../data/monitor.db"
        )
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            # Relative SQLite paths are relative to the config file, like every other path.
            url = prefix + str(self.resolve(url[len(prefix) :]).resolve())
        return url

    def sinks(self, value: Any) -> tuple[SinkConfig, ...]:
        if value is None:
            return (SinkConfig("console", "console"),)
        allowed = {"name": True, "type": True, "url": False, "secret": False, **_SINK_DELIVERY_KEYS}
        sinks: list[SinkConfig] = []
        for place, item in _items(self.c, value, "sinks"):
            raw = self.c.mapping(item, place, allowed)
            name = self.c.string(raw.get("name", ""), f"{place}.name", pattern=ID_PATTERN)
            kind = self.c.string(raw.get("type", ""), f"{place}.type")
            if kind and kind not in SINK_TYPES:
                self.c.problem(
                    f"{place}.type", f"unknown sink type {kind!r} ({', '.join(SINK_TYPES)})"
                )
            url = self.c.string(raw["url"], f"{place}.url") if raw.get("url") is not None else None
            if kind in ("webhook", "slack", "discord") and not url:
                self.c.problem(f"{place}.url", f"a {kind} sink needs a url")
            if url and not re.match(r"^https?://[^\s/]+", url):
                self.c.problem(f"{place}.url", f"must be an http(s) URL, got {url!r}")
            if any(s.name == name for s in sinks):
                self.c.problem(f"{place}.name", f"duplicate sink name {name!r}")
            sink = SinkConfig(name, kind, url or None)
            sinks.append(_sink_delivery(self.c, raw, place, sink, self.private_ok(raw, place)))
        return tuple(sinks)

    def private_ok(self, raw: dict[str, Any], place: str) -> bool:
        """A sink may reach private addresses if it or ``fetch:`` opts in (G2)."""
        own = raw.get("allow_private_networks")
        if own is not None:
            return self.c.boolean(own, f"{place}.allow_private_networks")
        fetch = self.raw.get("fetch")
        value = fetch.get("allow_private_networks") if isinstance(fetch, dict) else None
        return isinstance(value, bool) and value

    def sources(self, value: Any) -> tuple[tuple[FeedConfig, ...], tuple[FolderConfig, ...]]:
        raw = self.c.mapping(value, "sources", {"feeds": False, "folders": False})
        names: set[str] = set()
        urls: set[str] = set()
        feeds = []
        for place, item in _items(self.c, raw.get("feeds"), "sources.feeds"):
            feed = self.c.mapping(
                item, place, {"name": False, "url": True, "interval": False, "allow_private": False,
                              "full_text": False},
            )  # fmt: skip
            url = self.c.string(feed.get("url", ""), f"{place}.url")
            if url and not re.match(r"^https?://[^\s/]+", url):
                self.c.problem(f"{place}.url", f"must be an http(s) URL, got {url!r}")
            if url in urls:
                self.c.problem(f"{place}.url", f"duplicate feed URL {url!r}")
            urls.add(url)
            default_name = re.sub(r"^https?://([^/:]+).*$", r"\1", url)
            name = self.source_name(feed.get("name", default_name), place, names)
            interval = None
            if feed.get("interval") is not None:
                interval = self.c.convert(
                    feed["interval"], f"{place}.interval", parse_duration, None
                )
            allow = feed.get("allow_private")
            if allow is not None:
                allow = self.c.boolean(allow, f"{place}.allow_private")
            full_text = self.c.boolean(feed.get("full_text", False), f"{place}.full_text")
            feeds.append(FeedConfig(name, url, interval, allow, full_text))
        folders = []
        allowed = {"name": True, "path": True, "patterns": False, "interval": False,
                   "max_file_size": False}  # fmt: skip
        for place, item in _items(self.c, raw.get("folders"), "sources.folders"):
            folder = self.c.mapping(item, place, allowed)
            name = self.source_name(folder.get("name", ""), place, names)
            path = self.resolve(self.c.string(folder.get("path", ""), f"{place}.path"))
            patterns = self.c.strings(
                folder.get("patterns", list(DEFAULT_PATTERNS)), f"{place}.patterns"
            )
            interval = self.c.convert(
                folder.get("interval", "1s"),
                f"{place}.interval",
                parse_duration,
                timedelta(seconds=1),
            )
            cap = self.c.convert(
                folder.get("max_file_size", "5MiB"), f"{place}.max_file_size", parse_size, 5 << 20
            )
            folders.append(FolderConfig(name, path, patterns, interval, cap))
        return tuple(feeds), tuple(folders)

    def source_name(self, value: Any, place: str, names: set[str]) -> str:
        name = self.c.string(value, f"{place}.name", pattern=re.compile(r"^[\w.\-]+$"))
        if name in RESERVED_SOURCE_NAMES:
            self.c.problem(f"{place}.name", f"source name {name!r} is reserved for monitor itself")
        elif name in names:
            self.c.problem(f"{place}.name", f"duplicate source name {name!r}")
        names.add(name)
        return name

    def fetch(self, value: Any) -> FetchConfig:
        d = FetchConfig()
        durations = ("timeout", "connect_timeout", "read_timeout", "parse_timeout",
                     "min_interval", "max_interval")  # fmt: skip
        sizes, counts = ("max_bytes", "parse_memory"), ("concurrency", "per_host")
        keys = {k: False for k in (*durations, *sizes, *counts, "allow_private_networks")}
        raw = self.c.mapping(value, "fetch", keys)
        values: dict[str, Any] = {}
        for key in durations:
            if key in raw:
                values[key] = self.c.convert(
                    raw[key], f"fetch.{key}", parse_duration, getattr(d, key)
                )
        for key in sizes:
            if key in raw:
                values[key] = self.c.convert(raw[key], f"fetch.{key}", parse_size, getattr(d, key))
        for key in counts:
            if key in raw:
                if isinstance(raw[key], int) and not isinstance(raw[key], bool) and raw[key] > 0:
                    values[key] = raw[key]
                else:
                    self.c.problem(f"fetch.{key}", f"must be a positive integer, got {raw[key]!r}")
        if "allow_private_networks" in raw:
            values["allow_private_networks"] = self.c.boolean(
                raw["allow_private_networks"], "fetch.allow_private_networks"
            )
        return replace(d, **values)


# --- the dashboard's token (issue #8) ------------------------------------------------

MIN_TOKEN_LENGTH = 16


def is_loopback_listen(listen: str) -> bool:
    """True when ``host:port`` binds only to loopback (127.0.0.0/8, ::1, localhost)."""
    host = listen.rpartition(":")[0].strip("[]").lower()
    if host in ("localhost", ""):
        return host == "localhost"  # an empty host binds every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: treat it as reachable from outside


def _http_token(c: _Checker, value: Any, listen: str | None) -> str | None:
    """The page needs no login on loopback; anywhere else a token is required. Problems
    never show the token (``${VAR}`` friendly, like sink secrets)."""
    token = c.string(value, "http.token") if value is not None else ""
    if token and len(token) < MIN_TOKEN_LENGTH:
        c.problem("http.token", f"must be at least {MIN_TOKEN_LENGTH} characters")
    if listen and not token and not is_loopback_listen(listen):
        c.problem("http.token", f"http.listen {listen!r} is not loopback: set http.token so "
                  "the dashboard requires it")  # fmt: skip
    return token or None


# --- sink delivery keys (issue #4) -------------------------------------------------

_SINK_DELIVERY_KEYS = {
    "retry": False, "timeout": False, "digest": False, "timezone": False,
    "min_interval": False, "allow_private_networks": False,
}  # fmt: skip


def _sink_delivery(
    c: _Checker, raw: dict[str, Any], place: str, sink: SinkConfig, private_ok: bool
) -> SinkConfig:
    """Secrets, retry schedule, timeout, digest, rate limit and the SSRF check of one sink."""
    secrets = _secrets(c, raw.get("secret"), f"{place}.secret", sink.type)
    retry = None
    if raw.get("retry") is not None:
        retry = tuple(
            c.convert(v, f"{place}.retry[{i}]", parse_duration, timedelta(seconds=5))
            for i, v in enumerate(c.strings(raw["retry"], f"{place}.retry"))
        )
    timeout = c.convert(raw.get("timeout", "15s"), f"{place}.timeout", parse_duration,
                        timedelta(seconds=15))  # fmt: skip
    min_interval = None
    if raw.get("min_interval") is not None:
        min_interval = c.convert(raw["min_interval"], f"{place}.min_interval", parse_duration, None)
    digest = c.string(raw["digest"], f"{place}.digest") if raw.get("digest") else None
    timezone = c.string(raw.get("timezone", "UTC"), f"{place}.timezone")
    _check_schedule(c, place, sink.type, digest, timezone)
    if sink.url and not private_ok and _is_private_literal(sink.url):
        c.problem(f"{place}.url", "refers to a private, loopback or link-local address; set "
                  "allow_private_networks: true on the sink to allow it")  # fmt: skip
    return dataclasses.replace(
        sink, secrets=secrets, retry=retry, timeout=timeout, digest=digest, timezone=timezone,
        min_interval=min_interval, allow_private_networks=private_ok,
    )  # fmt: skip


def _secrets(c: _Checker, value: Any, place: str, kind: str) -> tuple[str, ...]:
    """``secret: X`` or ``secret: [new, old]`` (rotation). Contract 4 lets a webhook go
    unsigned (``secret: "${OPS_SECRET:-}"``), so a missing one is a logged warning, but a
    short or malformed one is an error (C6). Problems never show the secret."""
    texts = c.strings(value, place) if value is not None else ()
    texts = tuple(t for t in texts if t)
    if kind != "webhook" and texts:
        c.problem(place, f"only webhook sinks are signed; a {kind} sink takes no secret")
    if len(texts) > 2:
        c.problem(place, "at most two secrets (the new one and the old one during a rotation)")
    for i, text in enumerate(texts):
        problem = _secret_problem(text)
        if problem:
            c.problem(f"{place}[{i}]" if len(texts) > 1 else place, problem)
    return texts


def _secret_problem(text: str) -> str | None:
    if text.startswith("whsec_"):
        try:
            key = base64.b64decode(text[6:], validate=True)
        except (binascii.Error, ValueError):
            return "a whsec_ secret must be base64 after the prefix"
    else:
        key = text.encode("utf-8")
    if not 24 <= len(key) <= 64:
        return f"a secret must be 24–64 bytes, this one is {len(key)}"
    return None


def _check_schedule(c: _Checker, place: str, kind: str, digest: str | None, tz: str) -> None:
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        c.problem(f"{place}.timezone", f"unknown time zone {tz!r}")
        zone = None
    if digest is None:
        return
    if kind == "webhook":
        c.problem(f"{place}.digest", "webhook sinks send one hit per request (contract 4); "
                  "use digest on slack, discord or console sinks")  # fmt: skip
    try:
        CronTrigger.from_crontab(digest, timezone=zone or "UTC")
    except ValueError as e:
        c.problem(f"{place}.digest", f"not a cron expression ({e})")


def _is_private_literal(url: str) -> bool:
    """At load we can only judge IP literals and localhost; names are checked at connect."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None) or address
    return bool(
        mapped.is_private or mapped.is_loopback or mapped.is_link_local or mapped.is_unspecified
        or mapped.is_multicast or mapped.is_reserved
        or mapped in ipaddress.ip_network("100.64.0.0/10")
    )  # fmt: skip


# --- watchlists ---------------------------------------------------------------------

_RULE_KEYS = {
    "id": True, "title": False, "query": True, "notify": False, "sources": False,
    "tags": False, "severity": False, "enabled": False, "examples": False,
    "realert": False,
}  # fmt: skip
_ENTITY_KEYS = {"id": True, "name": True, "aliases": False}


def _watchlist_files(builder: _Builder, value: Any) -> list[Path]:
    files: list[Path] = []
    for i, pattern in enumerate(builder.c.strings(value, "watchlists")):
        matched = sorted(glob.glob(str(builder.resolve(pattern))))
        if not matched:
            builder.c.problem(f"watchlists[{i}]", f"no file matches {pattern!r}")
        files.extend(Path(m) for m in matched if Path(m) not in files)
    return files


def _load_watchlists(
    builder: _Builder, value: Any, notify: tuple[str, ...], sinks: set[str], sources: set[str]
) -> tuple[dict[str, Entity], tuple[Rule, ...], dict[str, Query]]:
    """Entities first (rules of any file may use any entity), then rules."""
    docs = []
    path_of: dict[str, Path] = {}
    for path in _watchlist_files(builder, value):
        shown = os.path.relpath(path, builder.base)
        path_of[shown] = path
        c = builder.c.for_file(shown)
        raw = _read_yaml(path, c)
        if raw is None:
            continue
        docs.append((shown, c, c.mapping(raw, "", {"entities": False, "rules": False})))
    entities: dict[str, Entity] = {}
    for _shown, c, doc in docs:
        for place, item in _items(c, doc.get("entities"), "entities"):
            entity = _entity(c, item, place)
            if entity and entity.id in entities:
                c.problem(f"{place}.id", f"duplicate entity id {entity.id!r}")
            elif entity:
                entities[entity.id] = entity
    rules: dict[str, Rule] = {}
    queries: dict[str, Query] = {}
    for shown, c, doc in docs:
        for place, item in _items(c, doc.get("rules"), "rules"):
            rule = _rule(c, item, place, shown, notify, sinks, sources)
            if rule is not None and isinstance(item, dict) and "examples" in item:
                examples = _examples(c, item["examples"], f"{place}.examples", path_of[shown])
                rule = replace(rule, examples=examples)
            if rule is None:
                continue
            if rule.id in rules:
                c.problem(
                    f"{place}.id", f"duplicate rule id {rule.id!r} (also in {rules[rule.id].file})"
                )
                continue
            try:
                queries[rule.id] = parse_query(rule.query, entities)
            except QueryError as e:
                c.problem(f"{place}.query", str(e))
            rules[rule.id] = rule
    return entities, tuple(rules.values()), queries


def _entity(c: _Checker, item: Any, place: str) -> Entity | None:
    raw = c.mapping(item, place, _ENTITY_KEYS)
    if not raw.get("id") or not raw.get("name"):
        return None
    ident = c.string(raw["id"], f"{place}.id", pattern=ID_PATTERN)
    return Entity(
        ident,
        c.string(raw["name"], f"{place}.name"),
        c.strings(raw.get("aliases", []), f"{place}.aliases"),
    )


def _rule(
    c: _Checker, item: Any, place: str, file: str,
    notify: tuple[str, ...], sinks: set[str], sources: set[str],
) -> Rule | None:  # fmt: skip
    raw = c.mapping(item, place, _RULE_KEYS)
    if not raw.get("id") or raw.get("query") is None:
        return None
    ident = c.string(raw["id"], f"{place}.id", pattern=ID_PATTERN)
    rule_notify = c.strings(raw["notify"], f"{place}.notify") if "notify" in raw else notify
    for i, name in enumerate(rule_notify):
        if name not in sinks:
            c.problem(f"{place}.notify[{i}]", f"unknown sink {name!r}")
    rule_sources = c.strings(raw.get("sources", []), f"{place}.sources")
    for i, name in enumerate(rule_sources):
        if name not in sources:
            c.problem(f"{place}.sources[{i}]", f"unknown source {name!r}")
    severity = c.string(raw.get("severity", "medium"), f"{place}.severity")
    if severity not in Severity.__members__.values():
        c.problem(f"{place}.severity", f"must be one of {', '.join(Severity)}, got {severity!r}")
        severity = "medium"
    return Rule(
        id=ident,
        title=c.string(raw.get("title", ident), f"{place}.title"),
        query=c.string(raw["query"], f"{place}.query"),
        notify=rule_notify,
        sources=rule_sources,
        tags=c.strings(raw.get("tags", []), f"{place}.tags"),
        severity=Severity(severity),
        enabled=c.boolean(raw.get("enabled", True), f"{place}.enabled"),
        file=file,
        realert=(
            c.convert(raw["realert"], f"{place}.realert", parse_duration, None)
            if raw.get("realert") is not None
            else None
        ),
    )


# --- labelled examples ----------------------------------------------------------------

# An example that looks like a file name is a file, relative to its watchlist.
_EXAMPLE_FILE = re.compile(r"^[^\n]+\.(txt|md|html|json)$", re.IGNORECASE)


def _examples(c: _Checker, value: Any, place: str, watchlist: Path) -> tuple[Example, ...]:
    """``examples: {match: [...], no_match: [...]}``: texts, or files beside the watchlist."""
    raw = c.mapping(value, place, {"match": False, "no_match": False})
    examples = []
    for key, expected in (("match", True), ("no_match", False)):
        for item_place, item in _items(c, raw.get(key), f"{place}.{key}"):
            text = c.string(item, item_place)
            if not text.strip():
                c.problem(item_place, "empty example")
            elif _EXAMPLE_FILE.match(text.strip()):
                path = (watchlist.parent / text.strip()).resolve()
                if not path.is_file():
                    c.problem(item_place, f"example file {text.strip()!r} not found at {path}")
                examples.append(Example(expected, path=str(path), place=item_place))
            else:
                examples.append(Example(expected, text=text, place=item_place))
    return tuple(examples)
