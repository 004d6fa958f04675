"""The folder source: turn local seed files into articles, safely (RELIABILITY.md G15).

``read_file`` parses one file by extension (``.txt``/``.md``, ``.html``/``.htm``,
``.json``; anything else as plain text). ``FolderScanner.scan(now)`` reads the
files that are new or changed and have been quiet for ``quiet_period`` seconds.
Files are only read, never moved or changed. Each is checked with ``lstat`` and
``stat`` before it is opened, so FIFOs and devices are never opened; symlinks are
followed only to regular files inside the folder and symlinked folders never
(so loops cannot happen); sizes are checked before reading.
A bad file raises ``SourceError`` with a stable ``reason``: ``file_too_large``,
``not_regular_file``, ``symlink_outside``, ``symlink_loop``, ``broken_symlink``,
``binary_file``, ``bad_json``, ``bad_html``, ``unreadable``, ``vanished``.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.domain import Article, content_hash
from monitor.errors import SourceError

__all__ = ["DEFAULT_MAX_BYTES", "FolderScanner", "ScanResult", "iter_paths", "read_file"]

log = logging.getLogger("monitor.sources.folder")

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MAX_TITLE_CHARS = 1_000  # G4
MAX_BODY_BYTES = 64 * 1024  # G4: PostgreSQL rows and alert payloads stay small
MAX_ITEMS = 1_000  # G4: articles from one JSON file, as from one feed fetch
_SNIFF_BYTES = 8192
# Binary: over 5 % control bytes in the first 8 KiB (and more than a few stray ones).
_BINARY_RATIO, _BINARY_MIN = 0.05, 16
# O_NONBLOCK: a FIFO swapped in after the stat check must not block the open.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Failures that depend on permissions or timing: retried on every scan, reported once.
_TRANSIENT = frozenset({"unreadable", "vanished", "broken_symlink", "symlink_loop"})

# Text that must not reach storage: C0 controls except \t and \n (G4; PostgreSQL
# rejects NUL) and lone surrogates (JSON "\ud800" escapes cannot be encoded as UTF-8).
_CONTROLS = dict.fromkeys(c for c in range(32) if c not in (9, 10))
_SURROGATES = re.compile("[\ud800-\udfff]")
_HEADING = re.compile(r"#{1,6}\s+")
_SETEXT = re.compile(r"\s*(=+|-+)\s*")


# --- reading one file -------------------------------------------------------


def read_file(
    path: str | os.PathLike[str],
    *,
    source: str,
    fetched_at: datetime,
    max_bytes: int,
    root: str | os.PathLike[str] | None = None,
) -> list[Article]:
    """Parse one file into articles (one per JSON object, else one); raise ``SourceError``.

    With ``root``, a symlink is followed only if it resolves inside ``root``.
    ``item_key`` is the content hash, so a re-saved file yields the same key.
    """
    name = os.fspath(path)
    text = _decode(_read_bytes(name, source, max_bytes, root), source, name)
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".json":
        records = _parse_json(text, source, name, fetched_at)
    elif suffix in (".html", ".htm"):
        records = [_parse_html(text, source, name)]
    else:
        records = [(*_parse_text(text), None, None)]
    articles: dict[str, Article] = {}  # identical objects in one file are one article
    for title, body, url, published_at in records:
        title = _cap_title(title)
        body = _cap_body(_clean(body).strip())
        if not title and not body:
            continue
        key = content_hash(title, body)
        articles[key] = Article(source, key, title, body, url, published_at, fetched_at, name)
    return list(articles.values())


def _target(path: str, root: str | None, source: str) -> tuple[str, os.stat_result]:
    """The regular file to open for ``path`` and its stat, following a symlink only inside root."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(path, strict=True)
            if root is not None and not _is_inside(real, root):
                raise SourceError(source, "symlink_outside", f"{path!r} -> {real!r}")
            path, st = real, os.stat(real)
    except OSError as e:
        raise _os_error(source, path, e) from e
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(source, "not_regular_file", repr(path))
    return path, st


def _read_bytes(
    path: str, source: str, max_bytes: int, root: str | os.PathLike[str] | None
) -> bytes:
    """At most ``max_bytes`` of a checked regular file; never opens anything else."""
    real, st = _target(path, None if root is None else os.path.realpath(root), source)
    if st.st_size > max_bytes:  # by stat: a 2 GB sparse file is never read
        raise SourceError(source, "file_too_large", f"{path!r}: {st.st_size} bytes")
    try:
        with open(os.open(real, _OPEN_FLAGS), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped after the stat
                raise SourceError(source, "not_regular_file", repr(path))
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise _os_error(source, path, e) from e
    if len(data) > max_bytes:  # it grew after the stat
        raise SourceError(source, "file_too_large", f"{path!r}: over {max_bytes} bytes")
    return data


def _os_error(source: str, path: str, error: OSError) -> SourceError:
    if error.errno == errno.ENOENT:  # deleted since it was listed, or a dangling symlink
        reason = "broken_symlink" if os.path.islink(path) else "vanished"
    else:
        reason = "symlink_loop" if error.errno == errno.ELOOP else "unreadable"
    return SourceError(source, reason, f"{path!r}: {error.strerror}")


def _decode(data: bytes, source: str, path: str) -> str:
    """UTF-8 with replacement (UTF-16 if it has a BOM); refuse files that are not text."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    sample = data[:_SNIFF_BYTES]
    controls = sum(sample.count(bytes([c])) for c in _CONTROLS if c not in (12, 13))
    if controls > _BINARY_MIN and controls > len(sample) * _BINARY_RATIO:
        raise SourceError(source, "binary_file", repr(path))
    return data.decode("utf-8-sig", "replace")


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROLS)
    return _SURROGATES.sub("\ufffd", text)


def _cap_title(title: str) -> str:
    return " ".join(_clean(title).split())[:MAX_TITLE_CHARS]


def _cap_body(body: str) -> str:
    raw = body.encode("utf-8")
    return body if len(raw) <= MAX_BODY_BYTES else raw[:MAX_BODY_BYTES].decode("utf-8", "ignore")


# --- formats ----------------------------------------------------------------

Record = tuple[str, str, str | None, datetime | None]  # title, body, url, published_at


def _parse_text(text: str) -> tuple[str, str]:
    """First non-empty line is the title (a Markdown ``# `` stripped), the rest the body."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            title = _HEADING.sub("", line.strip(), count=1)
            rest = lines[i + 1 :]
            if rest and _SETEXT.fullmatch(rest[0]):  # "Title\n=====" Markdown heading
                rest = rest[1:]
            return title, "\n".join(rest)
    return "", ""


def _parse_json(text: str, source: str, path: str, fetched_at: datetime) -> list[Record]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: "[[[[..." nesting bombs
        raise SourceError(source, "bad_json", f"{path!r}: {e}") from e
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SourceError(source, "bad_json", f"{path!r}: not an object or a list of objects")
    if len(items) > MAX_ITEMS:
        log.warning("json items dropped source=%s path=%r kept=%d", source, path, MAX_ITEMS)
    records = []
    for index, item in enumerate(items[:MAX_ITEMS]):
        if not isinstance(item, dict):
            log.warning("json item skipped source=%s path=%r index=%d", source, path, index)
            continue
        body = next((v for k in ("text", "content", "body") if (v := _str(item, k))), "")
        published = _parse_date(_str(item, "published_at"), fetched_at)
        records.append((_str(item, "title"), body, _http_url(_str(item, "url")), published))
    return records


def _str(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _http_url(url: str) -> str | None:
    """Only http(s) links survive (G4): no ``javascript:``, ``file:`` or ``data:``."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _parse_date(value: str, fetched_at: datetime) -> datetime | None:
    """ISO 8601, naive taken as UTC; unparseable or over a day ahead of fetch time -> None (G4)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return None if when > fetched_at + timedelta(days=1) else when


_BLOCK_TAGS = "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2"
_BLOCK = frozenset(
    f"{_BLOCK_TAGS} h3 h4 h5 h6 header hr li main nav ol p pre section table td th tr ul".split()
)
_HIDDEN = frozenset({"script", "style", "template", "noscript", "svg"})


class _HtmlText(HTMLParser):
    """Collects ``<title>``, the first ``<h1>`` and the visible text, one paragraph per line.

    ``<head>`` needs no rule of its own: its only text is in title, script and
    style; stray text there is body text to a browser (HTML5 "in head" mode).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.h1: str | None = None
        self.lines: list[str] = []
        self._parts: list[str] = []
        self._in_title = False
        self._hidden = 0  # depth inside script, style, svg...
        self._h1_from: int | None = None  # index in lines where the first <h1> began

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self._break()
        if tag == "title" and self.title is None and not self._hidden:  # not an <svg><title>
            self.title, self._in_title = "", True
        elif tag in _HIDDEN:
            self._hidden += 1
        elif tag == "h1" and self._h1_from is None:
            self._h1_from = len(self.lines)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK:
            self._break()
        if tag == "title":
            self._in_title = False
        elif tag in _HIDDEN and self._hidden:
            self._hidden -= 1
        elif tag == "h1" and self._h1_from is not None and self.h1 is None:
            self.h1 = " ".join(self.lines[self._h1_from :])

    def handle_data(self, data: str) -> None:
        if self._in_title and self.title is not None:
            self.title += data
        elif not self._hidden:
            self._parts.append(data)

    def _break(self) -> None:
        if line := " ".join("".join(self._parts).split()):
            self.lines.append(line)
        self._parts = []


def _parse_html(text: str, source: str, path: str) -> Record:
    parser = _HtmlText()
    try:
        parser.feed(text)
        parser.close()
    except AssertionError as e:  # _markupbase asserts on "<![foo ...]>" (CPython 3.11)
        raise SourceError(source, "bad_html", f"{path!r}: {e}") from e
    parser._break()
    title = " ".join((parser.title or parser.h1 or "").split())
    lines = parser.lines[1:] if parser.lines[:1] == [title] else parser.lines
    return title, "\n".join(lines), None, None


# --- walking and scanning ---------------------------------------------------


def _is_inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Case-insensitive glob on the file name, so ``*.txt`` also takes ``NEWS.TXT``."""
    return any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


def _walk(
    root: str, patterns: tuple[str, ...], on_error: Callable[[str, OSError], None]
) -> Iterator[str]:
    """Paths of files under ``root`` whose names match, sorted, without following symlinked dirs.

    Dot files and folders are left out: editors and rsync write their temporary
    copies there (``.news.txt.swp``, ``.news.txt.Xy12``), and ``.git`` is not news.
    """
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            on_error(top, e)
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False  # vanished: _target reports it
            if is_dir:
                subdirs.append(entry.path)
            elif _matches(entry.name, patterns):
                yield entry.path
        stack.extend(reversed(subdirs))


def iter_paths(
    paths: Iterable[str | os.PathLike[str]], patterns: tuple[str, ...]
) -> Iterator[Path]:
    """Files to read as the folder source would: folders walked, files given taken as they are.

    Inside a folder, symlinks that leave it are skipped and logged.
    """
    for given in paths:
        top = os.fspath(given)
        if not os.path.isdir(top):
            yield Path(top)
            continue
        real_root = os.path.realpath(top)
        for path in _walk(top, patterns, _log_dir_error):
            if os.path.islink(path) and not _is_inside(os.path.realpath(path), real_root):
                log.warning("file skipped path=%r reason=symlink_outside", path)
                continue
            yield Path(path)


def _log_dir_error(path: str, error: OSError) -> None:
    log.warning("folder skipped path=%r reason=unreadable detail=%s", path, error.strerror)


Fingerprint = tuple[int, int, int]  # size, mtime_ns, inode
# %r keeps a file name with a newline on one log line (G10, L6).
_SKIPPED = "file skipped source=%s path=%r reason=%s detail=%s"


@dataclass
class ScanResult:
    """One scan's new articles, refused files (path, reason) and files still being written."""

    articles: list[Article] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


@dataclass
class FolderScanner:
    """Scans one folder; remembers in memory what it has read, so rescans are cheap.

    A fresh process reads everything again (a full rescan on start, G15); the
    store drops known content hashes, so that costs reads but never re-alerts.
    """

    name: str
    path: Path
    patterns: tuple[str, ...]
    max_bytes: int = DEFAULT_MAX_BYTES
    quiet_period: float = 2.0
    # path -> the fingerprint it was read (or refused for good) at
    _done: dict[str, Fingerprint] = field(default_factory=dict, init=False, repr=False)
    # path -> (fingerprint, now) when first seen not yet quiet
    _pending: dict[str, tuple[Fingerprint, float]] = field(default_factory=dict, init=False)
    # path -> (reason, fingerprint) of the last refusal reported
    _reported: dict[str, tuple[str, Fingerprint | None]] = field(default_factory=dict, init=False)

    def scan(self, now: float) -> ScanResult:
        """Read new and changed files that have been quiet; ``now`` is epoch seconds."""
        root = os.fspath(self.path)
        try:  # the folder itself: failing is a source error, not "no news" (G5)
            real_root = os.path.realpath(root, strict=True)
            with os.scandir(real_root):
                pass
        except OSError as e:
            raise SourceError(self.name, "folder_unreadable", f"{root!r}: {e.strerror}") from e
        result = ScanResult()
        fetched_at = datetime.fromtimestamp(now, UTC)
        present: set[str] = set()

        def on_error(path: str, error: OSError) -> None:
            present.add(path)
            self._refuse(path, None, _os_error(self.name, path, error), result)

        for path in _walk(root, self.patterns, on_error):
            present.add(path)
            self._scan_file(path, real_root, now, fetched_at, result)
        for cache in (self._done, self._pending, self._reported):
            for gone in cache.keys() - present:
                del cache[gone]
        return result

    def _scan_file(
        self, path: str, root: str, now: float, fetched_at: datetime, result: ScanResult
    ) -> None:
        fingerprint: Fingerprint | None = None
        try:
            _, st = _target(path, root, self.name)
            fingerprint = (st.st_size, st.st_mtime_ns, st.st_ino)
            if self._done.get(path) == fingerprint:
                return
            if st.st_size > self.max_bytes:
                raise SourceError(self.name, "file_too_large", f"{path!r}: {st.st_size} bytes")
            if not self._is_quiet(path, fingerprint, st.st_mtime, now):
                log.debug("file waiting source=%s path=%r", self.name, path)
                result.waiting.append(path)
                return
            articles = read_file(
                path, source=self.name, fetched_at=fetched_at, max_bytes=self.max_bytes, root=root
            )
        except SourceError as e:
            self._refuse(path, fingerprint, e, result)
            return
        self._done[path] = fingerprint
        self._pending.pop(path, None)
        self._reported.pop(path, None)
        log.debug("file read source=%s path=%r articles=%d", self.name, path, len(articles))
        result.articles.extend(articles)

    def _is_quiet(self, path: str, fingerprint: Fingerprint, mtime: float, now: float) -> bool:
        """Unchanged for ``quiet_period``: by mtime, or, for a future mtime, by watching it."""
        if mtime <= now - self.quiet_period:
            return True
        seen = self._pending.get(path)
        if seen is None or seen[0] != fingerprint:
            self._pending[path] = (fingerprint, now)
            return False
        return now - seen[1] >= self.quiet_period

    def _refuse(
        self, path: str, fingerprint: Fingerprint | None, error: SourceError, result: ScanResult
    ) -> None:
        """Report a bad file once per change; cache it unless the cause may pass by itself."""
        if fingerprint is not None and error.reason not in _TRANSIENT:
            self._done[path] = fingerprint
        if self._reported.get(path) == (error.reason, fingerprint):
            return
        self._reported[path] = (error.reason, fingerprint)
        log.warning(_SKIPPED, self.name, path, error.reason, error.detail)
        result.skipped.append((path, error.reason))
