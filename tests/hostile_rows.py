"""The 66 rows of RELIABILITY.md 3(a), hostile inputs: one place for their titles and flags.

A test that checks a row says so with ``@row("H1")`` (or ``row_param`` in a
table test); the title, category and must-pass flag come from here, so a row
checked both in the regular suite (tests/test_fetch.py ...) and in
tests/reliability/ reads the same in the report. Must-pass, per 3(a):
H1-H23, F1-F12, F14, F18-F22, C1-C3, L1, L4 and L7.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from casebook import case, case_mark

F = TypeVar("F", bound=Callable[..., Any])

HTTP = {
    "H1": "slow-loris body: aborted at the total deadline, bytes read << cap",
    "H2": "slow headers (no status line): read timeout, feed error",
    "H3": "never-accepting listener / refused port: connect timeout / connection_refused",
    "H4": "'2 GB' body: stops at the 10 MiB cap (+ <= 1 read), RSS growth < 64 MiB",
    "H5": "lying Content-Length (short / long): protocol error or refused, no partial parse",
    "H6": "chunked body that never ends: total deadline or size cap, whichever first",
    "H7": "gzip bomb (1 GiB in 1.04 MB): aborted at the decoded cap, peak RSS < 2 x cap",
    "H8": "Content-Encoding 'gzip, gzip' (1,827 B -> 1 GiB): refused before decoding",
    "H9": "br / zstd / x-unknown, never advertised: unsupported_encoding",
    "H10": "truncated / corrupt gzip: decode_error, feed error",
    "H11": "redirect loop A -> B -> A: too_many_redirects after 5 hops",
    "H12": "30 distinct 302 hops: stops after 5",
    "H13": "redirect to file: / ftp: / gopher: / data:: scheme_not_allowed, no file read",
    "H14": "loopback, or meta.test -> 169.254.169.254, by default: refused before connect",
    "H15": "DNS rebinding (public first, 10.0.0.1 next): connect pinned to the checked IP",
    "H16": "200 text/html challenge page: not_a_feed, not '0 new items'",
    "H17": "200 with an empty body: empty_body feed error",
    "H18": "304 to our ETag: no parse, no error, next check scheduled, counter reset",
    "H19": "429 Retry-After 3600 / HTTP-date / 99999999 / banana: honoured, clamped to 24 h",
    "H20": "500/502/503 for 50 polls then 200: backoff to 24 h, never disabled, recovers",
    "H21": "404 / 410: feed error; 410 flagged gone, slow backoff",
    "H22": "self-signed TLS: tls_error, no silent insecure retry",
    "H23": "100 KiB response header / 10,000 headers: size-limit error, feed error",
}
CONTENT = {
    "F1": "billion laughs (one line and many): defused, RSS < 64 MiB over a plain parse",
    "F2": "quadratic blowup (20 KB entity x 20,000): refused, no 100 M-char field stored",
    "F3": "SYSTEM entity / parameter entity on a sentinel file: its content appears nowhere",
    "F4": "external DTD on our server: 0 requests for it",
    "F5": "invalid UTF-8, us-ascii label on UTF-8: valid text stored, a warning only",
    "F6": "feedparser's encoding and illformed/chardet fixtures: entries or a clean error",
    "F7": "&#x110000; / &#xFFFFFFFF; / &#xD800; in a title: feed error or item kept, clean",
    "F8": '<!ENTITY path "C:\\data">: caught, feed error at worst',
    "F9": 'GML srsName="EPSG:abc": ValueError caught',
    "F10": "ReDoS author (80 KB): parse killed at the deadline, parse_timeout, others on time",
    "F11": "100,000 nested elements / 200,000 nested <div>: no RecursionError, bounded",
    "F12": "10 MB description, 5 MB title: stored at the caps, alerts within provider limits",
    "F13": "50,000 items in one feed: only the first 1,000 processed",
    "F14": "duplicate GUIDs in one fetch: distinct stable keys, next poll 0 rows, 0 alerts",
    "F15": "GUID changing on every poll: 0 alerts from an unchanged feed over 20 polls",
    "F16": "no GUID, no link: key = hash(title + content)",
    "F17": "100 KB GUID, GUID with NUL: stored as sha256 keys, PostgreSQL insert succeeds",
    "F18": "NUL (&#0;, raw \\x00) in title / summary: stripped, PostgreSQL insert succeeds",
    "F19": "pubDate 9999 / 30 Feb / garbage / 1970 / +9999: fetch time, 1970 kept, sorted sanely",
    "F20": "item alerted, pruned by retention, re-emitted: no second alert (tombstone)",
    "F21": "summary with <script>, onerror, javascript:, <iframe>, expression(): no tags in alert",
    "F22": "<!everyone> @channel <@U123> <https://evil|bank> &: escaped Slack, parse: [] Discord",
    "F23": "link javascript: / data:: not linked, http(s) only",
    "F24": "link with | and >: percent-encoded in Slack <url|text>",
    "F25": "Discord markdown ([bank](evil), ||spoiler||, # Heading, @everyone): escaped",
    "F26": "title with \\n2026-01-01 ERROR forged and U+202E: one log record, no forged line",
    "F27": "truncated JSON Feed: feed error, not a crash",
}
FOLDER = {
    "L1": "file written in 10 chunks over 5 s: ingested once, complete, after the quiet period",
    "L2": "2 GB sparse file: file_too_large, never read",
    "L3": "binary / invalid UTF-8 / NUL-filled file: replaced or skipped, no crash",
    "L4": "symlink to a sentinel outside the folder; a symlink loop: not followed, logged",
    "L5": "FIFO named news.txt: never opened",
    "L6": "file name with a newline / invalid UTF-8: handled, log escaped",
    "L7": "10,000 files dropped at once: each ingested exactly once",
    "L8": "same content re-saved 5 times / touched: 0 new items",
    "L9": "file deleted before it is read; unreadable (EACCES) file: no crash, retried, logged",
}
CONFIG = {
    "C1": "invalid YAML at start-up: exit 2 before touching the DB, with file:line:col",
    "C2": "unknown key, interval 0, negative timeout, duplicate rule ids / feed URLs: all listed",
    "C3": "YAML alias bomb (9-way x 8 levels): refused before it is expanded",
    "C4": "rule regex (a+)+$: rejected, other rules still evaluated",
    "C5": "webhook URL on loopback / meta.test -> 169.254.169.254: refused at load and send",
    "C6": "webhook secret 8 bytes / not base64 / too many: rejected, never echoed",
    "C7": "10,000 feeds: start-up time (figure), first polls spread by the claim limit",
}
MUST_PASS = {
    *HTTP, *(f"F{n}" for n in (*range(1, 13), 14, 18, 19, 20, 21, 22)),
    "C1", "C2", "C3", "L1", "L4", "L7",
}  # fmt: skip
ROWS = {
    **{k: ("http", v) for k, v in HTTP.items()},
    **{k: ("content", v) for k, v in CONTENT.items()},
    **{k: ("folder", v) for k, v in FOLDER.items()},
    **{k: ("config", v) for k, v in CONFIG.items()},
}
assert len(ROWS) == 66 and len(MUST_PASS) == 47


def row(case_id: str) -> Callable[[F], F]:
    """Mark a test as the check of row ``case_id`` of 3(a)."""
    category, title = ROWS[case_id]
    return case(case_id, category, title, must_pass=case_id in MUST_PASS)


def row_param(case_id: str, *values: Any, id: str | None = None) -> Any:
    """One row of a table test, as ``pytest.param(*values)`` checking row ``case_id``."""
    category, title = ROWS[case_id]
    mark = case_mark(case_id, category, title, must_pass=case_id in MUST_PASS)
    return pytest.param(*values, id=id or case_id, marks=mark)
