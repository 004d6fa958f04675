"""File formats of the folder source: text -> (title, body, url, published_at) records.

What a rule sees of a file is the article's own text, one paragraph per line (the
query language's ``NEAR/P`` and ``NEAR/S`` split paragraphs at line breaks):

- ``.txt`` (and any other name): the first non-empty line is the title (a leading
  ``# `` stripped), the rest is plain text (``plain_paragraphs``): where it has blank
  lines they separate paragraphs and a single line break is a soft wrap, else each
  line is a paragraph;
- ``.md``/``.markdown``: the same title line and paragraph rule, read as CommonMark,
  so markup is not text: ``[text](url)`` is ``text``, ``**a**`` is ``a``, a heading
  or list item is a paragraph of its own, images and HTML tags are dropped;
- ``.html``/``.htm``: the page's title and main text (``pagetext``, the reading
  feeds' article pages get); its visible text, one block per line, only when there
  is no main text;
- ``.json``: an object or a list of objects with ``title``, ``text`` (or
  ``content``/``body``, read as plain text), and optional ``url`` and ``published_at``.

Text is cleaned of what must not reach storage and capped (G4).
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

from monitor.errors import SourceError
from monitor.sources.pagetext import extract_main_text

log = logging.getLogger("monitor.sources.formats")

MAX_TITLE_CHARS = 1_000  # G4
MAX_BODY_BYTES = 64 * 1024  # G4: PostgreSQL rows and alert payloads stay small
MAX_ITEMS = 1_000  # G4: articles from one JSON file, as from one feed fetch

# Text that must not reach storage: C0 controls except \t and \n (G4; PostgreSQL
# rejects NUL) and lone surrogates (JSON "\ud800" escapes cannot be encoded as UTF-8).
_CONTROLS = dict.fromkeys(c for c in range(32) if c not in (9, 10))
_SURROGATES = re.compile("[\ud800-\udfff]")
# An ATX heading's opening run of #, only where the line starts (CommonMark 4.2).
_HEADING = re.compile(r"^#{1,6}\s+")
_SETEXT = re.compile(r"\s*(=+|-+)\s*")
# A blank line: nothing but spaces (any Unicode space but a line break) between two breaks.
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
_SNIFF_BYTES = 8192
# Binary: over 5 % control bytes in the first 8 KiB (and more than a few stray ones).
_BINARY_RATIO, _BINARY_MIN = 0.05, 16


def decode(data: bytes, source: str, path: str) -> str:
    """UTF-8 with replacement (UTF-16 if it has a BOM); refuse files that are not text."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    sample = data[:_SNIFF_BYTES]
    controls = sum(sample.count(bytes([c])) for c in _CONTROLS if c not in (12, 13))
    if controls > _BINARY_MIN and controls > len(sample) * _BINARY_RATIO:
        raise SourceError(source, "binary_file", repr(path))
    return data.decode("utf-8-sig", "replace")


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROLS)
    return _SURROGATES.sub("\ufffd", text)


def cap_title(title: str) -> str:
    return " ".join(clean(title).split())[:MAX_TITLE_CHARS]


def cap_body(body: str) -> str:
    raw = body.encode("utf-8")
    return body if len(raw) <= MAX_BODY_BYTES else raw[:MAX_BODY_BYTES].decode("utf-8", "ignore")


Record = tuple[str, str, str | None, datetime | None]  # title, body, url, published_at


# --- plain text -----------------------------------------------------------------


def plain_paragraphs(text: str) -> str:
    """Plain text as one paragraph per line.

    Where the text has blank lines, they separate paragraphs and a single line break
    is a soft wrap, joined with a space: wire copy and Markdown are hand-wrapped at
    ~70 characters, and a sentence must not end at every wrap (CommonMark 0.31.2,
    4.8 "Paragraphs" and 6.8 "Soft line breaks", https://spec.commonmark.org/0.31.2/).
    Paragraphs stay one blank line apart, so a file that was never wrapped reads as
    before, to the byte (its content hash, and so its item key, does not change).
    Where it has none, nothing says a line is a wrap, so each line is a paragraph.
    """
    text = text.strip()
    if not has_blank_lines(text):
        return text
    blocks = (" ".join(block.split()) for block in _BLANK_LINES.split(text))
    return "\n\n".join(block for block in blocks if block)


def has_blank_lines(text: str) -> bool:
    """Whether a blank line separates two non-blank lines of ``text``."""
    return _BLANK_LINES.search(text.strip()) is not None


def _title_line(text: str) -> tuple[str, str]:
    """The first non-empty line (stripped) and the text after it, setext underline dropped."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            rest = lines[i + 1 :]
            if rest and _SETEXT.fullmatch(rest[0]):  # "Title\n=====" Markdown heading
                rest = rest[1:]
            return line.strip(), "\n".join(rest)
    return "", ""


def parse_text(text: str) -> tuple[str, str]:
    """First non-empty line is the title (a Markdown ``# `` stripped), the rest the body."""
    title, rest = _title_line(text)
    return _HEADING.sub("", title, count=1), plain_paragraphs(rest)


# --- Markdown ------------------------------------------------------------------

# Strict CommonMark (markdown-it's "commonmark" preset, https://markdown-it-py.readthedocs.io/
# en/latest/using.html): its nesting limit (20) bounds the parser's recursion.
_MARKDOWN = MarkdownIt("commonmark")
_TEXT_TOKENS = frozenset({"text", "text_special", "code_inline"})
_LINE_BREAKS = frozenset({"softbreak", "hardbreak"})
# Source read at most. markdown-it is pure Python and linear, but dense markup ("[[[[",
# "_*_*") costs it many times what prose does; the text it yields is capped anyway
# (MAX_TITLE_CHARS, MAX_BODY_BYTES), and 4x those caps leaves room for link-heavy text.
_MAX_MARKDOWN_TITLE = 4 * MAX_TITLE_CHARS
_MAX_MARKDOWN_BODY = 4 * MAX_BODY_BYTES


def parse_markdown(text: str, source: str, path: str) -> tuple[str, str]:
    """The title line and the body of a Markdown file, as the text a reader of it sees.

    The paragraph rule is ``plain_paragraphs``'s: with blank lines in the body a line
    break inside a paragraph is a wrap (and paragraphs stay a blank line apart),
    without any each line is a paragraph. A hard break (two trailing spaces,
    CommonMark 6.7) counts as a soft one: editors leave trailing spaces on wrapped
    lines, and the same text as ``.txt`` must read the same.
    """
    line, rest = _title_line(text)
    title = " ".join(_markdown_paragraphs(line[:_MAX_MARKDOWN_TITLE], " ", source, path))
    rest = rest[:_MAX_MARKDOWN_BODY]
    wrapped = has_blank_lines(rest)
    paragraphs = _markdown_paragraphs(rest, " " if wrapped else "\n", source, path)
    return title, ("\n\n" if wrapped else "\n").join(paragraphs)


def _markdown_paragraphs(text: str, wrap: str, source: str, path: str) -> list[str]:
    """One string per paragraph, heading, list item paragraph, code or HTML block line."""
    found: list[str] = []
    for token in _MARKDOWN.parse(text):
        if token.type == "inline":
            found.extend(_inline_text(token.children or [], wrap).split("\n"))
        elif token.type in ("fence", "code_block"):  # literal text, read as a .txt body is
            found.extend(plain_paragraphs(token.content).split("\n"))
        elif token.type == "html_block":  # raw HTML: what a browser would show of it
            found.extend(visible_text(token.content, source, path)[1])
    paragraphs = (" ".join(p.split()) for p in found)
    return [p for p in paragraphs if p]


def _inline_text(children: list[Token], wrap: str) -> str:
    """The text of a paragraph's inline tokens: link and emphasis markers, images (an alt
    text is not shown to a reader) and inline HTML tags carry none."""
    return "".join(
        child.content if child.type in _TEXT_TOKENS else wrap
        for child in children
        if child.type in _TEXT_TOKENS or child.type in _LINE_BREAKS
    )


# --- JSON ----------------------------------------------------------------------


def parse_json(text: str, source: str, path: str, fetched_at: datetime) -> list[Record]:
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
        # Plain text, as in a .txt file: users paste the same hand-wrapped wire copy here.
        body = next((v for k in ("text", "content", "body") if (v := _str(item, k))), "")
        body = plain_paragraphs(clean(body))
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


# --- HTML ----------------------------------------------------------------------

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


def parse_html(text: str, source: str, path: str) -> Record:
    """The page's title and main text; its visible text when it has no main text."""
    try:
        page = extract_main_text(source, text)
    except SourceError as e:
        log.warning("html read as visible text source=%s path=%r reason=%s",
                    source, path, e.reason)  # fmt: skip
        title, lines = visible_text(text, source, path)
    else:
        title, lines = page.title, page.text.split("\n")
    if lines and " ".join(lines[0].split()) == title:  # the headline is the title, not body
        lines = lines[1:]
    return title, "\n".join(lines), None, None


def visible_text(text: str, source: str, path: str) -> tuple[str, list[str]]:
    """``<title>`` (else the first ``<h1>``) and the visible text, one block per line."""
    parser = _HtmlText()
    try:
        parser.feed(text)
        parser.close()
    except AssertionError as e:  # _markupbase asserts on "<![foo ...]>" (CPython 3.11)
        raise SourceError(source, "bad_html", f"{path!r}: {e}") from e
    parser._break()
    return " ".join((parser.title or parser.h1 or "").split()), parser.lines
