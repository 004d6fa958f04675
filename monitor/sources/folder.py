"""The folder source: turn local seed files into articles, safely (RELIABILITY.md G15).

``read_file`` parses one file by extension (``.txt``, ``.md``/``.markdown``,
``.html``/``.htm``, ``.json``; anything else as plain text; ``formats`` says how).
``FolderScanner.scan(now)`` reads the files that are new or changed and have been
quiet for ``quiet_period`` seconds. Files are only read, never moved or changed.
Each is checked with ``lstat`` and ``stat`` before it is opened, so FIFOs and
devices are never opened; symlinks are followed only to regular files inside the
folder and symlinked folders never (so loops cannot happen); sizes are checked
before reading.
A bad file raises ``SourceError`` with a stable ``reason``: ``file_too_large``,
``not_regular_file``, ``symlink_outside``, ``symlink_loop``, ``broken_symlink``,
``binary_file``, ``bad_json``, ``bad_html``, ``unreadable``, ``vanished``.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from monitor.domain import Article, content_hash
from monitor.errors import SourceError
from monitor.sources.formats import (
    cap_body,
    cap_title,
    clean,
    decode,
    parse_html,
    parse_json,
    parse_markdown,
    parse_text,
)

__all__ = ["DEFAULT_MAX_BYTES", "FolderScanner", "ScanResult", "iter_paths", "read_file"]

log = logging.getLogger("monitor.sources.folder")

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# O_NONBLOCK: a FIFO swapped in after the stat check must not block the open.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Failures that depend on permissions or timing: retried on every scan, reported once.
_TRANSIENT = frozenset({"unreadable", "vanished", "broken_symlink", "symlink_loop"})


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
    text = decode(_read_bytes(name, source, max_bytes, root), source, name)
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".json":
        records = parse_json(text, source, name, fetched_at)
    elif suffix in (".html", ".htm"):
        records = [parse_html(text, source, name)]
    elif suffix in (".md", ".markdown"):  # the extensions of text/markdown (RFC 7763)
        records = [(*parse_markdown(clean(text), source, name), None, None)]
    else:  # line breaks normalised first: the paragraph rule reads blank lines
        records = [(*parse_text(clean(text)), None, None)]
    articles: dict[str, Article] = {}  # identical objects in one file are one article
    for title, body, url, published_at in records:
        title = cap_title(title)
        body = cap_body(clean(body).strip())
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
    quiet_period: float = 1.0  # a writer silent this long is done (L1: 10 chunks over 5 s)
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
