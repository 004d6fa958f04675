"""Parse feed bytes with feedparser inside killable worker processes (G3).

feedparser is not a security boundary (RELIABILITY.md): one internal entity
referenced many times expands to a 100 M-character title, an 80 KB
``<author>`` costs 14.6 s of CPU (kurtmckee/feedparser#562), and some
character references make ``parse()`` raise (#599, #590). So:

- feedparser only ever gets ``bytes`` and the response headers, never a URL or
  a path (it would fetch or open them itself, without a timeout);
- a pre-parse check refuses a DTD whose internal entities would expand past a
  budget (``entity_expansion_refused``);
- each parse runs in a worker process with an address-space cap
  (``RLIMIT_AS``) and a wall-time deadline; a worker that overruns is killed
  and replaced, and the feed gets ``parse_timeout`` / ``parse_worker_died``
  and is quarantined: its next parses run in a lane of their own (``ParserPool``),
  so more hostile feeds than workers cannot keep the healthy ones waiting;
- every exception inside the worker becomes that feed's error;
- a document cut off inside an entry is refused (``truncated_feed``) rather
  than stored half (``monitor.sources.truncated``).

The worker hands back plain ``ParsedFeed`` values with fields pre-trimmed to a
few times their stored caps, so no runaway field crosses the pipe. ``read``
goes further and hands back the normalised articles (``monitor.sources.
normalise``), each with an annotation the pool was given a function for (the
story signature): that work then runs beside the daemon on another core, not
under its GIL (bench/bench_feeds.py, issue #3).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import queue
import re
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from monitor.domain import Article
from monitor.errors import SourceError
from monitor.sources.truncated import ended_early, is_cut_inside_entry

MAX_ENTRIES = 1000  # G4: only the first (newest, in feed order) 1,000 entries of a fetch
TRIM_TITLE = 4_000  # pre-trim, a margin over normalise's caps (title 1,000, text 64 KiB)
TRIM_TEXT = 256 * 1024
TRIM_KEY = 4_096
ENTITY_BUDGET = 1_000_000  # characters all internal entity references may expand to
# Workers run at a lower priority than the daemon: on a busy machine its one thread that
# stores polls otherwise got a fair share beside four parsing workers, and waited for a core
# more than it ran (bench/bench_feeds.py, issue #3: 1.72 cores busy -> 1.91, first pass
# 17 % shorter). Parsing still takes every core the daemon leaves idle.
WORKER_NICE = 10
# A cold worker imports feedparser and, under "spawn", the parent's main module (spaCy
# included): seconds on a loaded machine. That start-up is waited for on its own, never out
# of a feed's parse deadline, or a short deadline kills every new worker before its first
# parse, forever (found by the replica fault test: 3 replicas, parse_timeout 5s).
WORKER_STARTUP_TIMEOUT = 120.0

log = logging.getLogger("monitor.sources.parse")

_ENTITY_DECL = re.compile(rb"<!ENTITY\s+(%\s*)?([\w.:-]+)\s+(?:\"([^\"]*)\"|'([^']*)')", re.S)
_ENTITY_REF = re.compile(rb"[&%]([\w.:-]+);")


@dataclass(frozen=True)
class RawEntry:
    """One entry as feedparser saw it: strings untrusted, lengths pre-trimmed."""

    guid: str
    link: str
    title: str
    summary: str
    content: str
    published: tuple[int, ...] | None  # a UTC struct_time as a tuple
    updated: tuple[int, ...] | None
    # The title is markup: Atom's type="html"/"xhtml", or an RSS title feedparser found
    # HTML in. Otherwise it is text, whatever it holds ("<!everyone>", "a < b": F22).
    title_html: bool = False


@dataclass(frozen=True)
class ParsedFeed:
    version: str  # '' when feedparser found no feed format
    title: str
    ttl: str | None  # RSS <ttl>, minutes
    warning: str | None  # a benign bozo (e.g. CharacterEncodingOverride)
    entries: tuple[RawEntry, ...]


@dataclass(frozen=True)
class FeedDigest:
    """A parsed feed's normalised articles, as ``ParserPool.read`` returns them."""

    version: str
    ttl: str | None
    warning: str | None
    entries: int  # how many entries feedparser found (0 with no version: not a feed)
    articles: tuple[Article, ...]
    annotations: tuple[bytes, ...]  # the pool's ``annotate`` of each article's text, or ()


# What a worker may compute per article besides normalising it (a module-level
# function, so that it can be handed to a spawned worker).
Annotate = Callable[[str], bytes]


class EntityBudgetError(ValueError):
    """The feed's DTD declares entities that would expand past the budget (F1, F2)."""


class TruncatedFeedError(ValueError):
    """The document ends inside an entry: the body was cut off (monitor.sources.truncated)."""


def check_entities(body: bytes, budget: int = ENTITY_BUDGET) -> None:
    """Raise EntityBudgetError if the internal entities could expand past ``budget`` characters."""
    if b"<!ENTITY" not in body:
        return
    values = {m.group(2): (m.group(3) or m.group(4) or b"") for m in _ENTITY_DECL.finditer(body)}
    sizes: dict[bytes, int] = {}

    def size(name: bytes, depth: int = 0) -> int:
        if name in sizes or name not in values:
            return sizes.get(name, len(name) + 2)
        if depth > 20:
            raise EntityBudgetError("entities nested too deep")
        sizes[name] = budget + 1  # a reference cycle counts as infinite
        value = values[name]
        total = len(value) + sum(size(r, depth + 1) for r in _ENTITY_REF.findall(value))
        sizes[name] = min(total, budget + 1)
        return sizes[name]

    total = 0
    for ref in _ENTITY_REF.findall(body):
        if ref in values:
            total += size(ref)
            if total > budget:
                raise EntityBudgetError(f"references expand to over {budget} characters")


def parse_bytes(body: bytes, headers: dict[str, str], sanitize: bool = False) -> ParsedFeed:
    """feedparser on bytes only. ``sanitize`` off: we turn HTML into text ourselves."""
    import feedparser  # here, so only the worker processes pay for the import

    check_entities(body)
    parsed = feedparser.parse(
        body,
        response_headers=_plain_headers(headers),
        sanitize_html=sanitize,
        resolve_relative_uris=False,
    )
    warning = None
    if parsed.get("bozo"):
        exception = parsed.get("bozo_exception")
        if ended_early(exception) and is_cut_inside_entry(body):
            raise TruncatedFeedError(str(exception)[:200])  # H5: never store half an entry
        warning = f"{type(exception).__name__}: {str(exception)[:200]}"
    feed = parsed.get("feed", {})
    entries = tuple(_entry(e) for e in parsed.get("entries", [])[:MAX_ENTRIES])
    return ParsedFeed(
        version=str(parsed.get("version") or ""),
        title=_text(feed.get("title"), TRIM_TITLE),
        ttl=_text(feed.get("ttl"), 40) or None,
        warning=warning,
        entries=entries,
    )


def _plain_headers(headers: dict[str, str]) -> dict[str, str]:
    # Content-Location would make feedparser resolve relative links against it; drop it.
    return {k: v for k, v in headers.items() if k.lower() not in ("content-location",)}


def _entry(e: Any) -> RawEntry:
    content = e.get("content") or []
    body = "\n".join(_text(c.get("value"), TRIM_TEXT) for c in content if isinstance(c, dict))
    return RawEntry(
        guid=_text(e.get("id"), TRIM_KEY),
        link=_text(e.get("link"), TRIM_KEY),
        title=_text(e.get("title"), TRIM_TITLE),
        summary=_text(e.get("summary"), TRIM_TEXT),
        content=body[:TRIM_TEXT],
        published=_time(e.get("published_parsed")),
        updated=_time(e.get("updated_parsed")),
        title_html=_is_markup(e.get("title_detail")),
    )


def _is_markup(detail: Any) -> bool:
    kind = detail.get("type") if isinstance(detail, dict) else None
    return kind in ("text/html", "application/xhtml+xml")


def _text(value: Any, cap: int) -> str:
    return value[:cap] if isinstance(value, str) else ""


def _time(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(x) for x in value[:9]) if value else None
    except (TypeError, ValueError):
        return None


# --- the worker processes ----------------------------------------------------------


def _worker_main(
    conn: Connection, memory_bytes: int, sanitize: bool, annotate: Annotate | None
) -> None:
    """A worker's loop: a request in, ("ok", result) or ("error", reason, detail) out.

    Requests: ("parse", body, headers) -> ParsedFeed; ("read", body, headers,
    source, fetched_at) -> FeedDigest.
    """
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    os.nice(WORKER_NICE)
    import feedparser  # noqa: F401 - warm up before saying ready: see WORKER_STARTUP_TIMEOUT

    import monitor.sources.normalise  # noqa: F401 - the same; it imports this module: not at the top

    if not _answer(conn, "ready"):
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, ConnectionResetError):  # the daemon closed the pipe, or died
            return
        if message is None:
            return
        kind, body, headers, *more = message
        if not _answer(conn, _handle(kind, body, headers, more, sanitize, annotate, memory_bytes)):
            return


def _answer(conn: Connection, message: Any) -> bool:
    """Send ``message`` to the daemon; False if it is gone (kill -9): nobody to answer, and
    nothing to say about it in its log."""
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError):
        return False
    except Exception as e:  # the result would not pickle: still this feed's error only
        return _answer(conn, ("error", "parse_error", f"result not sendable: {type(e).__name__}"))
    return True


def _handle(
    kind: str, body: bytes, headers: dict[str, str], more: list[Any], sanitize: bool,
    annotate: Annotate | None, memory_bytes: int,
) -> tuple[Any, ...]:  # fmt: skip
    """One request's reply: ("ok", result) or ("error", reason, detail)."""
    try:
        feed = parse_bytes(body, headers, sanitize)
        if kind == "parse":
            return ("ok", feed)
        from monitor.sources.normalise import normalise_feed  # loaded at the worker's start

        source, fetched_at = more
        articles = tuple(normalise_feed(source, feed, fetched_at))
        notes = tuple(annotate(a.text) for a in articles) if annotate else ()
        count = len(feed.entries)
        return ("ok", FeedDigest(feed.version, feed.ttl, feed.warning, count, articles, notes))
    except MemoryError:
        return ("error", "parse_memory_exceeded", f"over {memory_bytes >> 20} MiB")
    except RecursionError:
        return ("error", "parse_error", "nesting too deep")
    except EntityBudgetError as e:
        return ("error", "entity_expansion_refused", str(e))
    except TruncatedFeedError as e:
        return ("error", "truncated_feed", str(e))
    except Exception as e:  # G3: any failure inside feedparser is this feed's error only
        return ("error", "parse_error", f"{type(e).__name__}: {str(e)[:200]}")


class _Worker:
    def __init__(self, memory_bytes: int, sanitize: bool, annotate: Annotate | None):
        context = multiprocessing.get_context("spawn")  # no fork: the parent runs threads
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_worker_main, args=(child, memory_bytes, sanitize, annotate), daemon=True
        )
        self.process.start()
        child.close()

    def is_ready(self, timeout: float) -> bool:
        try:
            return self.conn.poll(timeout) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.kill()
        self.conn.close()


# Reasons that mean a parse held its worker to a limit (the deadline or the memory cap).
WORKER_LIMITS = frozenset({"parse_timeout", "parse_worker_died", "parse_memory_exceeded"})
# A worker killed under a parse (the OOM killer, an operator, S20's fault test) may have
# been parsing anything: it breaks a quarantined feed's row, but quarantines nobody.
AMBIGUOUS_LIMITS = frozenset({"parse_worker_died"})
# Parses within the limits in a row that end a source's quarantine: a feed that flaps
# between hostile and valid stays where its hangs delay no healthy feed.
QUARANTINE_RELEASE = 3


class _NotParsed(SourceError):
    """No parse of the feed ran: the lane stayed busy (``waited``), or its worker did not
    start. That says nothing new of the feed (see ``ParserPool._waited``)."""

    def __init__(self, source: str, reason: str, detail: str, *, waited: bool = False):
        super().__init__(source, reason, detail)
        self.waited = waited


class ParserPool:
    """A fixed set of parse workers; a worker that overruns is killed and replaced.

    A source whose parse reached a limit (the deadline or the memory cap) is
    quarantined: its next parses run in a lane of its own (one more worker, started
    when first needed) until ``QUARANTINE_RELEASE`` of them in a row stay within the
    limits. A hostile feed then holds a shared worker once, at its first offence;
    however many there are, afterwards they only delay each other (RELIABILITY G3).
    A worker killed under a parse (``AMBIGUOUS_LIMITS``) breaks a quarantined feed's
    row but quarantines nobody on its own. A feed whose worker did not start, or that
    waited for the lane in vain, had no parse: that neither quarantines it nor breaks
    its row, unless it waited with the very body that last reached a limit (so a feed
    flapping between a hang and a valid body stays).
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = 10.0,
        memory_bytes: int = 512 * 1024 * 1024,
        sanitize: bool = False,
        annotate: Annotate | None = None,
    ):
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.sanitize = sanitize
        self.annotate = annotate
        self._idle = _lane(workers)
        self._quarantine = _lane(1)
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        # Quarantined source -> (clean parses since, digest of the body that reached a limit).
        self._suspects: dict[str, tuple[int, bytes]] = {}

    @property
    def quarantined(self) -> set[str]:
        """The sources whose parses run in the quarantine lane."""
        with self._lock:
            return set(self._suspects)

    def parse(self, source: str, body: bytes, headers: dict[str, str]) -> ParsedFeed:
        """Parse in a worker within the deadline and memory cap; raise ``SourceError``."""
        result: ParsedFeed = self._ask(source, ("parse", body, headers))
        return result

    def read(
        self, source: str, body: bytes, headers: dict[str, str], fetched_at: datetime
    ) -> FeedDigest:
        """Parse and normalise in a worker (with its annotations), as ``parse`` bounds it."""
        result: FeedDigest = self._ask(source, ("read", body, headers, source, fetched_at))
        return result

    def _ask(self, source: str, request: tuple[Any, ...]) -> Any:
        with self._lock:
            quarantined = source in self._suspects
        lane, wait = (self._quarantine, self.timeout) if quarantined else (self._idle, None)
        body: bytes = request[1]
        try:
            result = self._ask_in(lane, source, request, wait)
        except _NotParsed as e:
            if e.waited:
                self._waited(source, body)
            raise
        except SourceError as e:
            offending = _digest(body) if e.reason in WORKER_LIMITS else None
            self._judge(source, offending=offending, certain=e.reason not in AMBIGUOUS_LIMITS)
            raise
        self._judge(source, offending=None)
        return result

    def _judge(self, source: str, *, offending: bytes | None, certain: bool = True) -> None:
        """A parse ended: within the limits (``offending`` None), or it reached one with
        the body of that digest (``certain``: by itself, not killed from outside)."""
        with self._lock:
            suspect = self._suspects.get(source)
            if offending is not None and (certain or suspect is not None):
                if suspect is None:
                    log.warning("parse quarantined source=%s: it reached a parse limit", source)
                self._suspects[source] = (0, offending)
            elif suspect is None:
                return
            elif suspect[0] + 1 >= QUARANTINE_RELEASE:
                del self._suspects[source]
                log.info("parse quarantine ended source=%s", source)
            else:
                self._suspects[source] = (suspect[0] + 1, suspect[1])

    def _waited(self, source: str, body: bytes) -> None:
        """A wait in vain for the lane: no parse, so it breaks a feed's row of clean
        parses only when the body is the one that last reached a limit. A flapping feed
        whose hangs met a busy lane would otherwise leave the lane on its valid bodies
        alone, and hang a shared worker again."""
        digest = _digest(body)
        with self._lock:
            suspect = self._suspects.get(source)
            if suspect is not None and suspect[1] == digest:
                self._suspects[source] = (0, digest)

    def _ask_in(
        self,
        lane: queue.Queue[_Worker | None],
        source: str,
        request: tuple[Any, ...],
        wait: float | None = None,
    ) -> Any:
        """``request`` answered by a worker of ``lane``, waiting at most ``wait`` for one.

        Quarantined feeds wait a deadline at most: queued behind each other's hangs,
        they would otherwise hold the poll threads the healthy feeds need.
        """
        try:
            worker = lane.get(timeout=wait)
        except queue.Empty:
            detail = f"over {wait:g}s waiting behind other quarantined feeds"
            raise _NotParsed(source, "parse_timeout", detail, waited=True) from None
        try:
            if worker is None:
                worker = self._start(source)
            worker.conn.send(request)
            if not worker.conn.poll(self.timeout):
                self._replace(worker)
                worker = None
                raise SourceError(source, "parse_timeout", f"over {self.timeout:g}s")
            reply = worker.conn.recv()
        except (EOFError, OSError) as e:
            if worker is not None:
                self._replace(worker)
                worker = None
            raise SourceError(source, "parse_worker_died", "killed or out of memory") from e
        finally:
            lane.put(worker)
        if reply[0] == "ok":
            return reply[1]
        raise SourceError(source, reply[1], reply[2])

    def _start(self, source: str) -> _Worker:
        """A new worker, once it has imported feedparser (outside any parse deadline)."""
        worker = _Worker(self.memory_bytes, self.sanitize, self.annotate)
        if not worker.is_ready(WORKER_STARTUP_TIMEOUT):
            worker.kill()
            raise _NotParsed(source, "parse_worker_died", "the parse worker did not start")
        with self._lock:
            self._all.append(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.remove(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop()


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


def _lane(workers: int) -> queue.Queue[_Worker | None]:
    """Slots for ``workers`` workers, each started on first use."""
    lane: queue.Queue[_Worker | None] = queue.Queue()
    for _ in range(workers):
        lane.put(None)
    return lane
