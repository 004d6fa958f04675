"""What a rule sees of a folder file (monitor.sources.formats), one case per rule.

Every case is a real file in a temporary folder, read through ``read_file`` as the folder
source reads it: ``.html`` as its main text and title, ``.txt``/``.md``/``.json`` text as
paragraphs (blank lines between them, single line breaks soft wraps), Markdown without
its markup.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import ROOT
from monitor.domain import Article, Rule
from monitor.match import match_article
from monitor.query import parse_query
from monitor.sources import formats
from monitor.sources.folder import read_file

FETCHED = datetime(2026, 3, 3, tzinfo=UTC)

STORY = [
    "SEOUL, March 3 — North Korea fired two short-range ballistic missiles into the sea "
    "off its east coast on Sunday, South Korea's military said, the latest in a series of "
    "launches this year.",
    "The missiles flew about 350 kilometres before falling into waters outside Japan's "
    "exclusive economic zone, according to the Joint Chiefs of Staff in Seoul, which said "
    "it had stepped up surveillance.",
    "Officials in Tokyo said there were no reports of damage to ships or aircraft. Japan's "
    "prime minister called the launches a threat to the peace and stability of the region.",
    "The launches came days after the United States and South Korea began annual spring "
    "military exercises, which Pyongyang calls rehearsals for an invasion.",
]
H1 = "North Korea fires two missiles"
BOILERPLATE_WORDS = ["cookie", "trending", "related", "subscribe", "privacy", "copyright"]


def news_page(head: str = "<title>Missile launch | Example News</title>", story: str = "") -> str:
    """A news page as sites serve them: the story inside navigation, a cookie banner,
    trending and related links, a newsletter box and a footer."""
    nav = "".join(f"<li><a href='/s/{k}'>Section {k}</a></li>" for k in range(12))
    trending = "".join(
        f"<li><a href='/t/{k}'>Trending story {k} all read</a></li>" for k in range(6)
    )
    related = "".join(
        f"<li><a href='/r/{k}'>Related article {k} on this</a></li>" for k in range(6)
    )
    story = story or "".join(f"<p>{p}</p>" for p in STORY)
    return (
        f"<!DOCTYPE html><html><head>{head}</head><body>"
        "<div class='cookie-banner'>We use cookies to improve your experience. "
        "<a href='/privacy'>Privacy policy</a> <button>Accept cookies</button></div>"
        f"<header><nav><ul>{nav}</ul></nav></header>"
        f"<main><article><h1>{H1}</h1>{story}</article>"
        f"<aside><h2>Trending</h2><ul>{trending}</ul></aside>"
        f"<section><h2>Related articles</h2><ul>{related}</ul></section>"
        "<div class='newsletter'>Subscribe to our newsletter for the morning briefing.</div>"
        "</main><footer>Advertisement. Copyright 2026 Example News. "
        "<a href='/privacy'>Privacy policy</a> <a href='/terms'>Terms</a></footer></body></html>"
    )


def read(path: Path) -> Article:
    (article,) = read_file(path, source="seeds", fetched_at=FETCHED, max_bytes=1 << 20)
    return article


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def hits(query: str, article: Article) -> list[str]:
    """The texts of the spans ``query`` matches in ``article``, or [] when it does not."""
    rule = Rule(id="q", title="q", query=query, notify=())
    found = match_article([(rule, parse_query(query))], article)
    return [m.text for hit in found for m in hit.matches]


# --- .html: the article's own text --------------------------------------------------


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_boilerplate_is_dropped(tmp_path: Path, suffix: str) -> None:
    """.html/.htm: the story's paragraphs, one per line; menus, banners and footers are gone."""
    a = read(write(tmp_path, f"page{suffix}", news_page()))
    assert a.body.split("\n") == [H1, *STORY]
    assert not [w for w in BOILERPLATE_WORDS if w in a.text.lower()]


def test_boilerplate_query_does_not_fire_on_the_page(tmp_path: Path) -> None:
    """A query made only of boilerplate words fires on the visible text, not on the story."""
    path = write(tmp_path, "page.html", news_page())
    query = 'cookie* OR newsletter OR subscribe OR "privacy policy" OR trending'
    title, lines = formats.visible_text(path.read_text(), "seeds", str(path))
    visible = Article("seeds", "k", title, "\n".join(lines), None, None, FETCHED)
    assert hits(query, visible)
    assert hits(query, read(path)) == []


@pytest.mark.parametrize(
    ("head", "title"),
    [
        (
            f"<meta property='og:title' content='{H1}'><title>Missile launch | Example</title>",
            H1,
        ),
        ("<title>Missile launch | Example News</title>", "Missile launch | Example News"),
        ("", H1),
    ],
    ids=["og:title", "title", "first h1"],
)
def test_html_title_from_metadata_then_title_then_h1(tmp_path: Path, head: str, title: str) -> None:
    """.html: the title is og:title, else <title>, else the first <h1>, never repeated as body."""
    a = read(write(tmp_path, "page.html", news_page(head)))
    assert a.title == title
    assert a.body.split("\n")[0] == (STORY[0] if title == H1 else H1)


def test_html_source_line_breaks_inside_a_paragraph_are_spaces(tmp_path: Path) -> None:
    """.html: a block wrapped in the page's source is one line, so NEAR/S matches across."""
    page = (
        "<html><head><title>Envoy returns</title></head><body><div class='post-body'>"
        "<div><span><span>The ambassador returned to Pyongyang on Monday,\n"
        "the embassy said, after three years in which\nthe border stayed closed. <br>"
        "</span></span></div><div><span>He said flights and rail links would\n"
        "resume soon.</span></div><pre>kept\n  as written</pre></div></body></html>"
    )
    a = read(write(tmp_path, "post.html", page))
    assert a.body.split("\n") == [
        "The ambassador returned to Pyongyang on Monday, the embassy said, after three years"
        " in which the border stayed closed.",
        "He said flights and rail links would resume soon.",
        "kept",
        "as written",
    ]
    assert hits("ambassador NEAR/S border", a) == ["ambassador", "border"]


def test_html_without_main_text_is_read_as_visible_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """.html with no main text (only links): its visible text, and one log line saying so."""
    page = (
        "<html><head><title>Index</title></head><body><ul><li><a href='/a'>Home</a></li>"
        "<li><a href='/b'>World news</a></li></ul></body></html>"
    )
    path = write(tmp_path, "index.html", page)
    with caplog.at_level(logging.INFO, logger="monitor.sources.formats"):
        a = read(path)
    assert (a.title, a.body) == ("Index", "Home\nWorld news")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "monitor.sources.formats"]
    assert "read as visible text" in line
    assert f"source=seeds path={str(path)!r} reason=no_main_text" in line


NAV_ONLY = "<ul><li><a href='/a'>Home</a></li><li><a href='/b'>World news</a></li></ul>"


@pytest.mark.parametrize(
    ("story", "body"),
    [("".join(f"<p>{p}</p>" for p in STORY), STORY), (NAV_ONLY, ["Home", "World news"])],
    ids=["main text", "visible text"],
)
def test_html_scripts_styles_and_head_are_never_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, story: str, body: list[str]
) -> None:
    """.html: script, style, noscript and head metadata are never text, nor in the fallback."""
    hidden = (
        "<style>p { color: red }</style><script>var x = '<p>hidden</p>';</script>"
        "<noscript>Enable JS</noscript>"
    )
    page = (
        f"<!doctype html><html><head><title>Summit &amp; talks</title>{hidden}"
        "<meta name='description' content='not body'></head><body>"
        f"{story}{hidden}</body></html>"
    )
    with caplog.at_level(logging.INFO, logger="monitor.sources.formats"):
        a = read(write(tmp_path, "page.html", page))
    assert (a.title, a.body.split("\n")) == ("Summit & talks", body)
    fell_back = [r for r in caplog.records if "read as visible text" in r.getMessage()]
    assert len(fell_back) == (body != STORY)


def test_html_seeds_keep_their_stories() -> None:
    """Every paragraph of the sample .html seeds' stories is in what a rule sees."""
    for path in sorted((ROOT / "seeds").glob("*.html")):
        article = read(path)
        _, visible = formats.visible_text(path.read_text(), "seeds", str(path))
        story = [line for line in visible if len(line) > 100]  # paragraphs, not menus
        assert story and all(line in article.body.split("\n") for line in story), path.name


# --- .txt and .json: plain text paragraphs --------------------------------------------

WIRE = (
    "The missiles flew about 350 kilometres before falling into the sea, according to\n"
    "the Joint Chiefs of Staff in Seoul, which said it had stepped up surveillance.\n"
    "\n"
    "Officials in Tokyo said there were no reports of damage to ships or aircraft.\n"
)
WIRE_READ = (
    "The missiles flew about 350 kilometres before falling into the sea, according to "
    "the Joint Chiefs of Staff in Seoul, which said it had stepped up surveillance.\n\n"
    "Officials in Tokyo said there were no reports of damage to ships or aircraft."
)


@pytest.mark.parametrize(
    ("text", "body"),
    [
        (f"Missiles fired\n\n{WIRE}", WIRE_READ),
        ("Missiles fired\n\nline one\nline two\n\n\n\n  next\t paragraph  \n",
         "line one line two\n\nnext paragraph"),
        ("Missiles fired\n\none\n   \ntwo\n", "one\n\ntwo"),
        ("Missiles fired\r\n\r\nwrapped\r\nline\r\n\r\nnext\r\n", "wrapped line\n\nnext"),
        ("Missiles fired\nline one\nline two\n", "line one\nline two"),
        ("Missiles fired\n\nline one\nline two\n", "line one\nline two"),
    ],
    ids=["wire copy", "runs of blank lines", "blank line of spaces", "crlf", "no blank line",
         "blank line only after the title"],
)  # fmt: skip
def test_txt_paragraphs(tmp_path: Path, text: str, body: str) -> None:
    """.txt: blank lines end paragraphs, a single break is a wrap; with none, a line each."""
    a = read(write(tmp_path, "wire.txt", text))
    assert (a.title, a.body) == ("Missiles fired", body)


@pytest.mark.parametrize(
    ("first_line", "title"),
    [("# Missiles fired", "Missiles fired"), ("### Missiles fired", "Missiles fired"),
     ("Ranked # 1 again", "Ranked # 1 again"), ("#hashtag trends", "#hashtag trends")],
)  # fmt: skip
def test_txt_title_loses_a_leading_heading_marker_only(
    tmp_path: Path, first_line: str, title: str
) -> None:
    """A .txt title drops a Markdown heading's opening #s, never a # inside the line."""
    assert read(write(tmp_path, "t.txt", f"{first_line}\n\nbody\n")).title == title


def test_near_s_across_a_former_wrap_matches(tmp_path: Path) -> None:
    """NEAR/S and NEAR/P match across a former wrap; a blank line still ends a paragraph."""
    a = read(write(tmp_path, "wire.txt", f"Missiles fired\n\n{WIRE}"))
    assert hits('kilometres NEAR/S "Joint Chiefs"', a) == ["kilometres", "Joint Chiefs"]
    assert hits("missiles NEAR/P surveillance", a) == ["missiles", "surveillance"]
    assert hits("kilometres NEAR/P Tokyo", a) == []


@pytest.mark.parametrize(
    ("text", "body"),
    [("wrapped\nline\n\nnext", "wrapped line\n\nnext"),
     ("line one\nline two", "line one\nline two")],
    ids=["wrapped", "no blank line"],
)  # fmt: skip
def test_json_text_is_plain_text(tmp_path: Path, text: str, body: str) -> None:
    """.json: ``text`` is read as a .txt body is (the same wire copy is pasted there)."""
    a = read(write(tmp_path, "a.json", json.dumps({"title": "Missiles fired", "text": text})))
    assert a.body == body


# --- .md: CommonMark, without its markup ---------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "body"),
    [
        ("[the envoy](https://example.org/a \"Envoy\") said", "the envoy said"),
        ("**Kim** met _Putin_ and *Lavrov*", "Kim met Putin and Lavrov"),
        ("the `KN-23` missile", "the KN-23 missile"),
        ("![Kim at the station](kim.jpg) Kim arrived", "Kim arrived"),
        ("a <span class='x'>marked</span> word", "a marked word"),
        ("## Background", "Background"),
        ("- first item\n- second\n  item wrapped", "first item\n\nsecond item wrapped"),
        ("1. first\n2. second", "first\n\nsecond"),
        ("> quoted\n> text", "quoted text"),
        ("<div>\nshown <b>text</b>\n</div>", "shown text"),
        ("```\ncode line\n```", "code line"),
        ("Intro &amp; \\*literal\\* stars", "Intro & *literal* stars"),
        ("a paragraph\nwrapped  \nwith a hard break", "a paragraph wrapped with a hard break"),
    ],
    ids=["link", "emphasis", "code span", "image", "inline html", "heading", "list",
         "ordered list", "blockquote", "html block", "fenced code", "escapes", "hard break"],
)  # fmt: skip
def test_md_markup_is_not_text(tmp_path: Path, markdown: str, body: str) -> None:
    """.md: markup gives only its text; a heading, list item or block is its own paragraph."""
    a = read(write(tmp_path, "a.md", f"# Missiles fired\n\nIntro.\n\n{markdown}\n"))
    assert (a.title, a.body) == ("Missiles fired", f"Intro.\n\n{body}")


@pytest.mark.parametrize(
    ("first_line", "title"),
    [
        ("# **Kim** meets [Putin](https://example.org/p) #", "Kim meets Putin"),
        ("Kim meets `Putin`\n=====", "Kim meets Putin"),
        ("## Kim meets Putin", "Kim meets Putin"),
    ],
    ids=["atx with markup", "setext", "level 2"],
)
def test_md_title_loses_its_markup(tmp_path: Path, first_line: str, title: str) -> None:
    """.md: the first line is the title, without heading markers or inline markup."""
    a = read(write(tmp_path, "a.md", f"{first_line}\n\nBody.\n"))
    assert (a.title, a.body) == (title, "Body.")


def test_md_without_blank_lines_keeps_a_paragraph_per_line(tmp_path: Path) -> None:
    """.md with no blank line in its body: each line is a paragraph, as in a .txt."""
    a = read(write(tmp_path, "a.md", "# Missiles fired\nline **one**\nline two\n- item\n"))
    assert a.body == "line one\nline two\nitem"


def test_md_and_txt_of_the_same_wire_copy_read_the_same(tmp_path: Path) -> None:
    """Wire copy without markup reads the same as .md and as .txt."""
    text = f"Missiles fired\n\n{WIRE}"
    md, txt = read(write(tmp_path, "a.md", text)), read(write(tmp_path, "a.txt", text))
    assert (md.title, md.body) == (txt.title, txt.body) == ("Missiles fired", WIRE_READ)
