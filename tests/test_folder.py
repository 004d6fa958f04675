"""The folder source (monitor.sources.folder): formats, rescans, hostile files (G15, L1-L9).

Every test uses a real temporary folder. Time is injected: file mtimes are set
relative to a fixed ``NOW`` and ``scan(now)`` is given the clock, so no test sleeps.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hostile_rows import row
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.domain import Article, content_hash
from monitor.errors import SourceError
from monitor.sources import folder, formats
from monitor.sources.folder import FolderScanner, iter_paths, read_file

NOW = 1_700_000_000.0  # the injected wall clock, epoch seconds
FETCHED = datetime.fromtimestamp(NOW, UTC)
PATTERNS = ("*.txt", "*.md", "*.html", "*.htm", "*.json")


def put(path: Path, data: str | bytes, age: float = 60.0) -> Path:
    """Write a file whose mtime is ``age`` seconds before NOW."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (NOW - age, NOW - age))
    return path


def read(path: Path | str, **kwargs: Any) -> list[Article]:
    options: dict[str, Any] = {"source": "seeds", "fetched_at": FETCHED, "max_bytes": 1 << 20}
    return read_file(path, **{**options, **kwargs})


def one(path: Path | str) -> Article:
    (article,) = read(path)
    return article


def scanner(root: Path, **kwargs: Any) -> FolderScanner:
    return FolderScanner("seeds", root, PATTERNS, **kwargs)


def reason_of(path: Path | str, **kwargs: Any) -> str:
    with pytest.raises(SourceError) as raised:
        read(path, **kwargs)
    return raised.value.reason


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail, rather than hang, if the code under test blocks (e.g. opens a FIFO)."""

    def fail(signum: int, frame: Any) -> None:
        raise TimeoutError("blocked: something opened a FIFO")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the module passes to ``os.open``."""
    paths: list[str] = []
    real_open = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        paths.append(os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder.os, "open", spy)
    return paths


# --- formats -------------------------------------------------------------------


def test_txt_first_nonempty_line_is_title_rest_is_body(tmp_path: Path) -> None:
    """.txt: the first non-empty line is the title, the rest (trimmed) is the body."""
    a = one(
        put(tmp_path / "a.txt", "\n\n  Seoul talks resume  \nFirst paragraph.\nSecond one.\n\n")
    )
    assert (a.title, a.body) == ("Seoul talks resume", "First paragraph.\nSecond one.")
    assert (a.source, a.url, a.published_at, a.fetched_at) == ("seeds", None, None, FETCHED)
    assert a.path == str(tmp_path / "a.txt")


def test_md_heading_marker_is_stripped_from_title(tmp_path: Path) -> None:
    """.md: a leading ``# `` is not part of the title; a later heading is a body paragraph."""
    a = one(put(tmp_path / "a.md", "# Envoy returns\n\nBody text.\n\n## Background\nMore."))
    assert a.title == "Envoy returns"
    assert a.body == "Body text.\n\nBackground\n\nMore."


def test_md_setext_underline_is_not_body(tmp_path: Path) -> None:
    """.md: a ``Title`` / ``=====`` heading yields the title without the underline."""
    a = one(put(tmp_path / "a.md", "Envoy returns\n=============\nBody text."))
    assert (a.title, a.body) == ("Envoy returns", "Body text.")


def test_html_malformed_marked_section_is_bad_html(tmp_path: Path) -> None:
    """.html that makes the stdlib parser assert is refused as ``bad_html``, not a crash."""
    assert reason_of(put(tmp_path / "a.html", "<p>x</p><![foo bar]>")) == "bad_html"


def test_json_object(tmp_path: Path) -> None:
    """.json: one object with title, text, url and published_at is one article."""
    doc = {
        "title": "Panel report",
        "text": "The panel said.",
        "url": "https://example.org/a",
        "published_at": "2023-03-08T09:30:00+09:00",
        "source": "someone-else",
    }
    a = one(put(tmp_path / "a.json", json.dumps(doc)))
    assert (a.title, a.body, a.url, a.source) == (
        "Panel report",
        "The panel said.",
        doc["url"],
        "seeds",
    )
    assert a.published_at == datetime(2023, 3, 8, 0, 30, tzinfo=UTC)


def test_json_list_is_one_article_per_object(tmp_path: Path) -> None:
    """.json: a list of objects gives one article each; non-objects and duplicates are dropped."""
    docs = [
        {"title": "A", "text": "a"},
        7,
        {"title": "B", "text": "b"},
        {"title": "A", "text": "a"},
    ]
    articles = read(put(tmp_path / "a.json", json.dumps(docs)))
    assert [(a.title, a.body) for a in articles] == [("A", "a"), ("B", "b")]
    assert articles[0].item_key != articles[1].item_key


def test_json_list_is_capped(tmp_path: Path) -> None:
    """.json: at most 1,000 objects of one file become articles (G4)."""
    docs = [{"title": f"T{i}"} for i in range(1500)]
    assert len(read(put(tmp_path / "a.json", json.dumps(docs)))) == formats.MAX_ITEMS == 1000


@pytest.mark.parametrize("key", ["text", "content", "body"])
def test_json_body_keys(tmp_path: Path, key: str) -> None:
    """.json: the body comes from ``text``, else ``content``, else ``body``."""
    a = one(put(tmp_path / "a.json", json.dumps({"title": "T", key: "the body"})))
    assert a.body == "the body"


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "//x.org/a", 5]
)
def test_json_url_only_http(tmp_path: Path, url: object) -> None:
    """.json: a url that is not http(s) is dropped (G4)."""
    a = one(put(tmp_path / "a.json", json.dumps({"title": "T", "url": url})))
    assert a.url is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-03-08", datetime(2023, 3, 8, tzinfo=UTC)),
        ("2023-03-08T10:00:00Z", datetime(2023, 3, 8, 10, tzinfo=UTC)),
        ((FETCHED + timedelta(hours=20)).isoformat(), FETCHED + timedelta(hours=20)),
        ((FETCHED + timedelta(days=2)).isoformat(), None),
        ("9999-12-31T00:00:00Z", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_json_published_at(tmp_path: Path, value: str, expected: datetime | None) -> None:
    """.json: ISO 8601 dates parse (naive = UTC); unparseable or > 1 day ahead -> None."""
    a = one(put(tmp_path / "a.json", json.dumps({"title": "T", "published_at": value})))
    assert a.published_at == expected


@pytest.mark.parametrize("data", ["{not json", "42", '"a string"', "[" * 100_000])
def test_json_that_is_not_objects_is_bad_json(tmp_path: Path, data: str) -> None:
    """.json: invalid JSON, a scalar, or a nesting bomb is ``bad_json``."""
    assert reason_of(put(tmp_path / "a.json", data)) == "bad_json"


def test_empty_title_and_body_gives_no_article(tmp_path: Path) -> None:
    """A file with no title and no body yields no article."""
    assert read(put(tmp_path / "a.txt", "\n  \n")) == []
    assert read(put(tmp_path / "b.json", '[{"title": "  ", "text": ""}]')) == []


def test_controls_stripped_and_newlines_normalised(tmp_path: Path) -> None:
    """NUL and C0 controls except tab/newline are stripped; CRLF and CR become LF (G4)."""
    a = one(put(tmp_path / "a.txt", b"Ti\x00tle\x07\r\nline\tone\r\nline\x1b two\rend"))
    assert (a.title, a.body) == ("Title", "line\tone\nline two\nend")


def test_json_lone_surrogates_replaced(tmp_path: Path) -> None:
    """.json ``\\ud800`` escapes become U+FFFD, so the text can be stored as UTF-8."""
    a = one(put(tmp_path / "a.json", '{"title": "a\\ud800b", "text": "c\\udfffd"}'))
    assert (a.title, a.body) == ("a\ufffdb", "c\ufffdd")
    a.text.encode("utf-8")


def test_title_and_body_are_capped(tmp_path: Path) -> None:
    """Titles are capped at 1,000 characters and bodies at 64 KiB of UTF-8 (G4)."""
    a = one(put(tmp_path / "a.txt", "T" * 5000 + "\n" + "é" * 100_000))
    assert len(a.title) == 1000
    assert len(a.body.encode()) <= 64 * 1024 and a.body == "é" * (32 * 1024)


@row("L3")
def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    """Invalid UTF-8 is decoded with U+FFFD, not refused (L3)."""
    a = one(put(tmp_path / "a.txt", b"Caf\xe9 news\nbody \xff\xfe ok"))
    assert (a.title, a.body) == ("Caf\ufffd news", "body \ufffd\ufffd ok")


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    """A UTF-16 file with a BOM (as Windows editors save it) is text, not binary."""
    a = one(put(tmp_path / "a.txt", "Title\nBody".encode("utf-16")))
    assert (a.title, a.body) == ("Title", "Body")


@row("L3")
@pytest.mark.parametrize(
    "data", [b"\x00" * 4096, bytes(range(256)) * 16, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64]
)
def test_binary_file_is_refused(tmp_path: Path, data: bytes) -> None:
    """A NUL-filled or binary file is ``binary_file`` (L3)."""
    assert reason_of(put(tmp_path / "a.txt", data)) == "binary_file"


# The syntax of HTML, JSON and Markdown, and letters enough to spell their keywords.
MARKUP_CHARS = "<>![]-/?&#;:=\"' \n\x00\\{}[],ab1éhtmlscriptile*_`()"
MARKUP = st.text(MARKUP_CHARS, max_size=300).map(str.encode)


@settings(max_examples=400, deadline=None)
@given(suffix=st.sampled_from([".txt", ".md", ".html", ".json", ".xyz"]), data=MARKUP | st.binary())
def test_any_bytes_give_articles_or_source_error(suffix: str, data: bytes) -> None:
    """Property: arbitrary bytes in any format give articles or a SourceError, never a crash."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            articles = read(put(Path(tmp) / f"fuzz{suffix}", data))
        except SourceError:
            return
    for a in articles:
        (a.title + a.body).encode("utf-8")
        assert a.item_key == content_hash(a.title, a.body)
        assert not any(ch < " " and ch not in "\t\n" for ch in a.title + a.body)


# --- one article per content ---------------------------------------------------


@row("L8")
def test_resaved_same_content_keeps_the_key(tmp_path: Path) -> None:
    """Re-saving or touching a file with the same content yields the same item key (L8)."""
    path = put(tmp_path / "a.md", "# T\nbody")
    first = one(path).item_key
    put(path, "# T\nbody", age=10)
    assert one(path).item_key == first == content_hash("T", "body")


def test_edited_file_gets_a_new_key(tmp_path: Path) -> None:
    """An edited file yields a new item key."""
    path = put(tmp_path / "a.md", "# T\nbody")
    first = one(path).item_key
    put(path, "# T\nbody, corrected")
    assert one(path).item_key != first


def test_unchanged_file_is_not_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rescan does not read an unchanged file again; a new scanner yields the same key."""
    put(tmp_path / "a.txt", "Title\nbody")
    calls: list[str] = []
    real = folder.read_file

    def counting(p: str, **kwargs: Any) -> list[Article]:
        calls.append(p)
        return real(p, **kwargs)

    monkeypatch.setattr(folder, "read_file", counting)
    s = scanner(tmp_path)
    first = s.scan(NOW).articles
    assert [a.title for a in first] == ["Title"]
    assert s.scan(NOW + 1).articles == [] and s.scan(NOW + 2).skipped == []
    assert len(calls) == 1
    assert scanner(tmp_path).scan(NOW + 3).articles[0].item_key == first[0].item_key


@row("L8")
def test_scanner_rereads_resaved_file_with_same_key(tmp_path: Path) -> None:
    """A re-saved file is read again, but with the same key, so the store drops it."""
    path = put(tmp_path / "a.txt", "Title\nbody")
    s = scanner(tmp_path)
    key = s.scan(NOW).articles[0].item_key
    put(path, "Title\nbody", age=30)
    assert [a.item_key for a in s.scan(NOW).articles] == [key]


def test_scanner_reads_edited_file_with_new_key(tmp_path: Path) -> None:
    """An edited file is read again and gets a new key."""
    path = put(tmp_path / "a.txt", "Title\nbody")
    s = scanner(tmp_path)
    key = s.scan(NOW).articles[0].item_key
    put(path, "Title\nbody v2", age=30)
    (edited,) = s.scan(NOW).articles
    assert edited.item_key != key and edited.body == "body v2"


# --- quiet period (L1) ---------------------------------------------------------


@row("L1")
def test_file_in_quiet_period_waits_then_is_read_once(tmp_path: Path) -> None:
    """A file modified within the quiet period is ``waiting``, then read once, complete (L1)."""
    path = put(tmp_path / "a.txt", "Title\npart one", age=0.5)
    s = scanner(tmp_path, quiet_period=2.0)
    first = s.scan(NOW)
    assert (first.articles, first.waiting) == ([], [str(path)])
    put(path, "Title\npart one part two", age=0)  # the writer goes on
    assert s.scan(NOW + 1).waiting == [str(path)]
    (article,) = s.scan(NOW + 2.5).articles
    assert article.body == "part one part two"
    assert s.scan(NOW + 10).articles == []


def test_future_mtime_is_read_once_it_stays_unchanged(tmp_path: Path) -> None:
    """A file stamped in the future is read once unchanged for the quiet period, not never."""
    path = put(tmp_path / "a.txt", "Title\nbody", age=-3600)
    s = scanner(tmp_path, quiet_period=2.0)
    assert s.scan(NOW).waiting == [str(path)]
    assert s.scan(NOW + 1).waiting == [str(path)]
    assert [a.title for a in s.scan(NOW + 2).articles] == ["Title"]


# --- hostile files -------------------------------------------------------------


@row("L2")
def test_huge_sparse_file_is_skipped_without_reading(tmp_path: Path, opened: list[str]) -> None:
    """A 2 GB sparse file is ``file_too_large`` by its size and never opened (L2)."""
    big = tmp_path / "big.txt"
    big.touch()
    os.truncate(big, 2 << 30)
    os.utime(big, (NOW - 60, NOW - 60))
    put(tmp_path / "ok.txt", "Fine\nbody")
    opened.clear()  # Path.touch itself calls os.open
    result = scanner(tmp_path).scan(NOW)
    assert result.skipped == [(str(big), "file_too_large")]
    assert [a.title for a in result.articles] == ["Fine"]
    assert reason_of(big, max_bytes=5 << 20) == "file_too_large"
    assert str(big) not in opened


def test_file_over_max_bytes_is_refused(tmp_path: Path) -> None:
    """A file one byte over ``max_bytes`` is refused; one at the cap is read."""
    assert one(put(tmp_path / "a.txt", "T\n" + "x" * 98)).body == "x" * 98
    assert reason_of(tmp_path / "a.txt", max_bytes=99) == "file_too_large"


@row("L4")
def test_symlink_outside_folder_is_not_followed(tmp_path: Path) -> None:
    """A symlink to a file outside the folder is refused and its content never read (L4)."""
    root, outside = tmp_path / "watched", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    put(outside / "secret.txt", "SECRET\nsentinel")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "dir").symlink_to(outside)
    result = scanner(root).scan(NOW)
    assert result.articles == []
    assert result.skipped == [(str(root / "leak.txt"), "symlink_outside")]
    assert reason_of(root / "leak.txt", root=root) == "symlink_outside"


def test_symlink_inside_folder_is_followed(tmp_path: Path) -> None:
    """A symlink to a file inside the folder is read, under the link's path."""
    put(tmp_path / "real.md", "# T\nbody")
    (tmp_path / "link.txt").symlink_to("real.md")
    result = scanner(tmp_path).scan(NOW)
    assert sorted(a.path or "" for a in result.articles) == [
        str(tmp_path / "link.txt"),
        str(tmp_path / "real.md"),
    ]
    assert len({a.item_key for a in result.articles}) == 1


@row("L4")
def test_symlink_loops_end(tmp_path: Path, no_hang: None) -> None:
    """A loop of file symlinks is ``symlink_loop``; a folder symlink to its parent is not walked."""
    (tmp_path / "a.txt").symlink_to("b.txt")
    (tmp_path / "b.txt").symlink_to("a.txt")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("..")
    put(tmp_path / "sub" / "ok.txt", "Fine\nbody")
    result = scanner(tmp_path).scan(NOW)
    assert sorted(result.skipped) == [
        (str(tmp_path / "a.txt"), "symlink_loop"),
        (str(tmp_path / "b.txt"), "symlink_loop"),
    ]
    assert [a.title for a in result.articles] == ["Fine"]


@row("L5")
def test_fifo_is_never_opened(tmp_path: Path, no_hang: None, opened: list[str]) -> None:
    """A FIFO named like news is refused as ``not_regular_file`` without an open (L5)."""
    os.mkfifo(tmp_path / "news.txt")
    result = scanner(tmp_path).scan(NOW)
    assert result.skipped == [(str(tmp_path / "news.txt"), "not_regular_file")]
    assert reason_of(tmp_path / "news.txt") == "not_regular_file"
    assert opened == []


@row("L5")
def test_symlink_to_fifo_is_never_opened(tmp_path: Path, no_hang: None, opened: list[str]) -> None:
    """A symlink to a FIFO inside the folder is refused without an open."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "news.txt").symlink_to("pipe")
    assert scanner(tmp_path).scan(NOW).skipped == [(str(tmp_path / "news.txt"), "not_regular_file")]
    assert opened == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_mode_000_file_is_skipped_then_retried(tmp_path: Path) -> None:
    """A mode-000 file is skipped as ``unreadable`` and read once readable again (L9)."""
    path = put(tmp_path / "a.txt", "Title\nbody")
    path.chmod(0)
    s = scanner(tmp_path)
    assert s.scan(NOW).skipped == [(str(path), "unreadable")]
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert [a.title for a in s.scan(NOW + 1).articles] == ["Title"]


@row("L9")
def test_unreadable_file_is_reported_once_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be opened (EACCES, simulated: tests run as root) is retried (L9)."""
    path = put(tmp_path / "a.txt", "Title\nbody")
    real_open = os.open
    denied = [True]

    def deny(p: Any, flags: int, *args: Any) -> int:
        if denied[0] and os.fsdecode(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real_open(p, flags, *args)

    monkeypatch.setattr(folder.os, "open", deny)
    s = scanner(tmp_path)
    assert s.scan(NOW).skipped == [(str(path), "unreadable")]
    assert s.scan(NOW + 1).skipped == []  # retried, but not reported again
    denied[0] = False
    assert [a.title for a in s.scan(NOW + 2).articles] == ["Title"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists mode-000 folders")
def test_unreadable_subfolder_does_not_stop_the_scan(tmp_path: Path) -> None:
    """A subfolder that cannot be listed is reported once; the other files are read."""
    (tmp_path / "locked").mkdir()
    put(tmp_path / "ok.txt", "Fine\nbody")
    (tmp_path / "locked").chmod(0)
    s = scanner(tmp_path)
    result = s.scan(NOW)
    (tmp_path / "locked").chmod(0o700)
    assert result.skipped == [(str(tmp_path / "locked"), "unreadable")]
    assert [a.title for a in result.articles] == ["Fine"]


def test_unlistable_subfolder_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subfolder that cannot be listed (EACCES, simulated) is reported once; others are read."""
    locked = tmp_path / "locked"
    locked.mkdir()
    put(locked / "x.txt", "Hidden\nbody")
    put(tmp_path / "ok.txt", "Fine\nbody")
    real_scandir = os.scandir

    def deny(p: Any) -> Any:
        if os.fspath(p) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real_scandir(p)

    monkeypatch.setattr(folder.os, "scandir", deny)
    s = scanner(tmp_path)
    result = s.scan(NOW)
    assert result.skipped == [(str(locked), "unreadable")]
    assert [a.title for a in result.articles] == ["Fine"]
    assert s.scan(NOW + 1).skipped == []


def test_bad_file_is_reported_once_per_change(tmp_path: Path) -> None:
    """A bad file is reported on the first scan only, and again after it changes."""
    path = put(tmp_path / "a.json", "{oops")
    s = scanner(tmp_path)
    assert s.scan(NOW).skipped == [(str(path), "bad_json")]
    assert s.scan(NOW + 1).skipped == []
    put(path, "{still oops", age=30)
    assert s.scan(NOW + 2).skipped == [(str(path), "bad_json")]
    put(path, '{"title": "Fixed"}', age=20)
    assert [a.title for a in s.scan(NOW + 3).articles] == ["Fixed"]


def test_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    """Files after a bad one in the same scan are still read."""
    put(tmp_path / "a.json", "{oops")
    put(tmp_path / "b.txt", b"\x00" * 100)
    put(tmp_path / "c.txt", "Fine\nbody")
    result = scanner(tmp_path).scan(NOW)
    assert [a.title for a in result.articles] == ["Fine"]
    assert [reason for _, reason in result.skipped] == ["bad_json", "binary_file"]


@row("L6")
def test_filename_with_newline(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file name with a newline is read, and the skip log for it stays on one line (L6)."""
    put(tmp_path / "two\nlines.txt", "Title\nbody")
    put(tmp_path / "bad\nname.json", "{oops")
    with caplog.at_level(logging.INFO, logger="monitor.sources.folder"):
        result = scanner(tmp_path).scan(NOW)
    assert [a.path for a in result.articles] == [str(tmp_path / "two\nlines.txt")]
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert any("reason=bad_json" in r.getMessage() for r in caplog.records)


@row("L6")
def test_filename_with_invalid_utf8(tmp_path: Path) -> None:
    """A file name that is not UTF-8 is read under its surrogate-escaped name (L6)."""
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9-\xff.txt")
    with open(raw, "wb") as f:
        f.write(b"Title\nbody")
    os.utime(raw, (NOW - 60, NOW - 60))
    (article,) = scanner(tmp_path).scan(NOW).articles
    assert article.path == os.fsdecode(raw)
    assert os.fsencode(article.path) == raw


@row("L9")
def test_file_deleted_between_listing_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that vanishes after it was listed is skipped as ``vanished`` (L9)."""
    path = put(tmp_path / "a.txt", "Title\nbody")
    put(tmp_path / "b.txt", "Other\nbody")
    real_read = folder.read_file

    def delete_then_read(p: str, **kwargs: Any) -> list[Article]:
        if p == str(path):
            path.unlink()
        return real_read(p, **kwargs)

    monkeypatch.setattr(folder, "read_file", delete_then_read)
    result = scanner(tmp_path).scan(NOW)
    assert result.skipped == [(str(path), "vanished")]
    assert [a.title for a in result.articles] == ["Other"]


def test_file_deleted_between_scans_then_recreated(tmp_path: Path) -> None:
    """A deleted file is forgotten; recreated with the same content it is read again."""
    path = put(tmp_path / "a.txt", "Title\nbody")
    s = scanner(tmp_path)
    key = s.scan(NOW).articles[0].item_key
    path.unlink()
    assert s.scan(NOW + 1) == folder.ScanResult()
    put(path, "Title\nbody")
    assert [a.item_key for a in s.scan(NOW + 2).articles] == [key]


# --- walking -------------------------------------------------------------------


def test_patterns_subfolders_and_dotfiles(tmp_path: Path) -> None:
    """Subfolders are walked; names match patterns case-insensitively; dot files are left out."""
    put(tmp_path / "a.txt", "A\nx")
    put(tmp_path / "B.TXT", "B\nx")
    put(tmp_path / "c.pdf", "C\nx")
    put(tmp_path / ".d.txt", "D\nx")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    put(tmp_path / "sub" / "deeper" / "e.md", "E\nx")
    put(tmp_path / ".git" / "f.txt", "F\nx")
    titles = sorted(a.title for a in scanner(tmp_path).scan(NOW).articles)
    assert titles == ["A", "B", "E"]


def test_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    """A missing folder fails the whole source (not "no news")."""
    with pytest.raises(SourceError) as raised:
        scanner(tmp_path / "nope").scan(NOW)
    assert (raised.value.source, raised.value.reason) == ("seeds", "folder_unreadable")


def test_iter_paths_walks_folders_and_keeps_given_files(tmp_path: Path) -> None:
    """iter_paths walks folders as the scanner does and yields files given as they are."""
    root, outside = tmp_path / "seeds", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    put(root / "b.md", "B\nx")
    put(root / "sub" / "a.txt", "A\nx")
    put(root / "skip.pdf", "x")
    put(outside / "secret.txt", "S\nx")
    put(outside / "given.pdf", "G\nx")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    found = list(iter_paths([root, str(outside / "given.pdf")], PATTERNS))
    assert found == [root / "b.md", root / "sub" / "a.txt", outside / "given.pdf"]
