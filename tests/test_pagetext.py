"""The main text of a web page (monitor.sources.pagetext), the one reading feeds' article
pages and folder ``.html`` files share. What the folder makes of it is in test_formats.py."""

from __future__ import annotations

import pytest
import trafilatura
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fulltext import PARAGRAPHS

from monitor.errors import SourceError
from monitor.sources.pagetext import MainText, as_shown, extract_main_text

PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Yongbyon | Example</title>"
    "<meta property='og:title' content='New construction seen at Yongbyon'></head><body>"
    "<nav><a href='/'>Home</a> <a href='/world'>World</a></nav><article>"
    "<h1>New construction seen</h1>" + "".join(f"<p>{p}</p>" for p in PARAGRAPHS) + "</article>"
    "<footer>Copyright 2026 Example News. All rights reserved.</footer></body></html>"
)


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        (b"", "empty_page"),
        ("   ", "empty_page"),
        (b"<html><body></body></html>", "no_main_text"),
        ("<p>x</p>", "no_main_text"),  # a fragment: trafilatura parses documents only
    ],
)
def test_no_main_text_is_a_source_error(html: bytes | str, reason: str) -> None:
    """An empty page or one without main text is this page's SourceError with a stable reason."""
    with pytest.raises(SourceError) as caught:
        extract_main_text("wire", html)
    assert (caught.value.source, caught.value.reason) == ("wire", reason)


def test_bytes_and_text_read_the_same() -> None:
    """A feed's page (bytes, charset detected) and a folder's file (text) give one reading."""
    from_bytes = extract_main_text("wire", PAGE.encode("utf-8"))
    assert from_bytes == extract_main_text("seeds", PAGE)
    assert from_bytes == MainText(
        "New construction seen at Yongbyon", "\n".join(["New construction seen", *PARAGRAPHS])
    )


def test_the_same_page_reads_the_same_every_time() -> None:
    """Reading a page again (a re-save, a rescan) never loses text to a dedup cache."""
    readings = {extract_main_text("seeds", PAGE) for _ in range(5)}
    assert len(readings) == 1
    assert PARAGRAPHS[1] in readings.pop().text


def test_as_shown_drops_what_a_browser_does_not_show() -> None:
    """noscript and template are gone and source line breaks are spaces; <pre> is kept."""
    tree = trafilatura.load_html(
        "<html><body><p>one\n   two</p><noscript>Enable JavaScript</noscript>"
        "<template><p>later</p></template><pre>a\n  b</pre></body></html>"
    )
    assert tree is not None
    body = as_shown(tree).find("body")
    assert body is not None
    assert [(e.tag, e.text) for e in body] == [("p", "one two"), ("pre", "a\n  b")]


TAGS = ["<p>", "</p>", "<div>", "</div>", "<br>", "<pre>", "</pre>", "<noscript>", "<b>",
        "</b>", "<table><tr><td>", "<![CDATA[", "<!--", "-->", "<script>", "<svg><title>",
        "&amp;", "&#0;", "\x00", "\n", " ", "word ", "Pyongyang said. "]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(TAGS) | st.text(max_size=20), max_size=60))
def test_any_document_gives_main_text_or_source_error(parts: list[str]) -> None:
    """Property: any markup in a document gives a reading or a SourceError, never a crash."""
    html = "<html><body>" + "".join(parts)
    try:
        page = extract_main_text("wire", html)
    except SourceError as e:
        assert e.reason in {"no_main_text", "extract_error"}
        return
    assert page.text and all(line == line.strip() and line for line in page.text.split("\n"))
