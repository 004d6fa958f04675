"""What a rule sees of a web page: its title and its main text, not the page around it.

One rule for every HTML page we read, whether a feed's article page (``fulltext.py``) or
an ``.html`` file in a watched folder (``formats.py``): a news page is mostly navigation,
"trending" lists, cookie banners and related links, and a rule that sees them fires on
words no article said. The main text is trafilatura's; the title is the page's own
metadata (``og:title``), else its ``<title>``, else its first ``<h1>``. The text is
one paragraph per line: a line break in the page's source is a space, as a browser
shows it; only block boundaries and ``<br>`` break lines.

trafilatura only ever sees the bytes or text we give it: we never call its
``fetch_url`` (it would bypass every bound of our fetcher), and ``extract`` reads the
given document only. Failures are ``SourceError`` with a stable reason:
``empty_page``, ``extract_error`` (the markup made the parser or extractor raise),
``no_main_text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import trafilatura
from lxml.etree import LxmlError, strip_elements
from lxml.html import HtmlElement

from monitor.errors import SourceError

__all__ = ["MainText", "as_shown", "extract_main_text"]

# The title, in order of trust: the headline the page gives for sharing (the Open Graph
# protocol, https://ogp.me/#metadata), the document's <title>, the first <h1>.
_TITLE_PATHS = ("//meta[@property='og:title']/@content", "//head/title", "//h1")
# A browser shows a run of spaces, tabs and line breaks in text as one space (CSS Text 3,
# https://www.w3.org/TR/css-text-3/#white-space-phase-1; the HTML "ASCII whitespace"),
# except where white-space is preserved (<pre>, <textarea>); scripts and styles stay as
# written.
_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_PRESERVED = ("pre", "textarea", "script", "style")
# Never shown: <noscript> represents nothing where scripts run (HTML, 4.12.2, https://
# html.spec.whatwg.org/multipage/scripting.html#the-noscript-element), and a <template>'s
# content is not rendered (4.12.3). trafilatura's fallbacks would take "Enable JavaScript".
_NOT_SHOWN = ("noscript", "template")


@dataclass(frozen=True)
class MainText:
    """A page's title (may be empty) and main text, one paragraph per line."""

    title: str
    text: str


def extract_main_text(source: str, html: bytes | str) -> MainText:
    """The title and main text of ``html``; ``SourceError`` when there is no main text.

    Bytes are decoded by trafilatura (it detects the charset); text is taken as it is.
    """
    if not html.strip():
        raise SourceError(source, "empty_page")
    try:
        tree = trafilatura.load_html(html)
        if tree is None:  # not a document at all: trafilatura declined to parse it
            raise SourceError(source, "no_main_text", "not an HTML document")
        title = _title(tree)
        text = _extract(as_shown(tree))
    # trafilatura and lxml raise a zoo of types on hostile markup (ValueError, lxml's
    # ParserError, RecursionError on deep nesting); each is this page's error, nothing more.
    except (ValueError, TypeError, LookupError, RecursionError, LxmlError) as e:
        raise SourceError(source, "extract_error", f"{type(e).__name__}: {e}"[:200]) from e
    lines = (line.strip() for line in (text or "").split("\n"))
    if not (body := "\n".join(line for line in lines if line)):
        raise SourceError(source, "no_main_text")
    return MainText(title, body)


def _title(tree: HtmlElement) -> str:
    for path in _TITLE_PATHS:
        for found in tree.xpath(path):
            text = found if isinstance(found, str) else found.text_content()
            if title := " ".join(text.split()):
                return title
    return ""


def as_shown(tree: HtmlElement) -> HtmlElement:
    """``tree``, changed in place to what a browser shows: no ``<noscript>`` or
    ``<template>``, and text whitespace collapsed.

    trafilatura's fallback extractors keep the line breaks of the page's source inside a
    block (a blog post's ``<span>`` wrapped at 70 characters), and each would end a
    paragraph and a sentence for ``NEAR/P`` and ``NEAR/S``; only block boundaries and
    ``<br>`` should.
    """
    strip_elements(tree, *_NOT_SHOWN, with_tail=False)
    kept = {node for top in tree.iter(*_PRESERVED) for node in top.iter()}
    for node in tree.iter():
        if node.text and isinstance(node.tag, str) and node not in kept:
            node.text = _WHITESPACE.sub(" ", node.text)
        if node.tail and node.getparent() not in kept:
            node.tail = _WHITESPACE.sub(" ", node.tail)
    return tree


def _extract(tree: HtmlElement) -> str | None:
    """trafilatura's main text, with the settings that scored best in
    bench/bench_extraction.py against the bodies people marked on real news pages.

    Options as documented at https://trafilatura.readthedocs.io/en/latest/usage-python.html:
    ``favor_precision`` drops more of the borderline blocks (teasers, link lists), the
    very text that makes a rule fire on a page's furniture; tables stay, as data tables
    inside a story are part of it; readers' comments and images stay out (an image's alt
    text is not text a reader sees). ``deduplicate`` stays off: it counts segments in a
    process-wide cache and drops those seen more than twice, so a page read again (a
    re-saved file, a restart's rescan) would lose paragraphs the first readings kept; the
    fourth reading of the same page comes out empty.
    """
    return trafilatura.extract(
        tree,
        favor_precision=True,
        include_tables=True,
        include_comments=False,
        include_images=False,
        deduplicate=False,
    )
