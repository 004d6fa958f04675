"""``load_config``: read monitor.yaml and its watchlists, validate all of it, build a Config."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from monitor.config.checker import (
    _Checker,
    _items,
    _read_yaml,
)
from monitor.config.model import (
    DEFAULT_CONFIG,
    DEFAULT_PATTERNS,
    ID_PATTERN,
    RESERVED_RULE_IDS,
    RESERVED_SOURCE_NAMES,
    SINK_TYPES,
    Config,
    FeedConfig,
    FetchConfig,
    FolderConfig,
    SinkConfig,
)
from monitor.config.sinks import (
    _SINK_DELIVERY_KEYS,
    _sink_delivery,
)
from monitor.config.watchlists import (
    _load_watchlists,
)
from monitor.errors import ConfigError
from monitor.languages import LANGUAGE_CODE, primary
from monitor.units import parse_duration, parse_size


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
                              "full_text": False, "language": False},
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
            language = self.language(feed.get("language"), place)
            feeds.append(FeedConfig(name, url, interval, allow, full_text, language))
        folders = []
        allowed = {"name": True, "path": True, "patterns": False, "interval": False,
                   "max_file_size": False, "language": False}  # fmt: skip
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
            language = self.language(folder.get("language"), place)
            folders.append(FolderConfig(name, path, patterns, interval, cap, language))
        return tuple(feeds), tuple(folders)

    def language(self, value: Any, place: str) -> str | None:
        """A source's ``language:``: a language tag (``en``, ``ru``, ``ko``, ``en-GB``)."""
        if value is None:
            return None
        text = self.c.string(value, f"{place}.language")
        if not LANGUAGE_CODE.match(text):
            self.c.problem(f"{place}.language", f"must be a language code such as en, ru or ko, "
                                                f"got {text!r}")  # fmt: skip
            return None
        return primary(text)

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
