"""Pure pieces of the dashboard: where <mark> goes, and the SVG chart."""

from __future__ import annotations

import datetime

import pytest

from monitor.domain import Match
from monitor.web.chart import ChartRow, days_ending, render_chart
from monitor.web.marks import excerpt, mark, marked_article, merge_spans


@pytest.mark.parametrize(
    ("spans", "merged"),
    [
        ([], []),
        ([(5, 7), (0, 2)], [(0, 2), (5, 7)]),
        ([(0, 4), (2, 6)], [(0, 6)]),  # overlapping (a phrase and a word inside it)
        ([(0, 2), (2, 4)], [(0, 4)]),  # touching
        ([(3, 3)], []),  # empty spans are dropped
    ],
)
def test_merge_spans(spans: list[tuple[int, int]], merged: list[tuple[int, int]]) -> None:
    """Spans come out sorted and disjoint, so no <mark> nests in another."""
    assert merge_spans(spans) == merged


def test_mark_cuts_a_window_and_flags_matches() -> None:
    """Only the window is returned; a match crossing its edge is clipped to it."""
    assert mark("abcdefgh", [(1, 3), (6, 9)], 2, 7) == (("c", True), ("def", False), ("g", True))


def test_excerpt_prefers_the_body_sentence_and_counts_the_rest() -> None:
    """The first body match's sentence is shown with its matches; the others are counted."""
    text = "Putin visits\n\nIt rained. Putin met Kim in Pyongyang. Later, Putin left."
    matches = [Match(0, 5, "Putin"), Match(25, 30, "Putin"), Match(60, 65, "Putin")]
    ex = excerpt(text, matches, body_start=14)
    assert "".join(t for t, _ in ex.segments) == "Putin met Kim in Pyongyang."
    assert ex.segments[0] == ("Putin", True)
    assert ex.other_matches == 2 and ex.starts_mid_text and ex.ends_mid_text


def test_marked_article_splits_title_and_paragraphs() -> None:
    """The title and each body line come back separately, matches marked in both."""
    text = "Kim visits\n\nFirst line.\nKim again."
    title, body = marked_article("Kim visits", text, [Match(0, 3, "Kim"), Match(24, 27, "Kim")])
    assert title == (("Kim", True), (" visits", False))
    assert body == [(("First line.", False),), (("Kim", True), (" again.", False))]


def test_chart_escapes_titles_and_counts_days() -> None:
    """Rule titles are escaped in the SVG, and each day's bar carries its count."""
    days = days_ending(datetime.date(2026, 5, 10), 3)
    assert days == ["2026-05-08", "2026-05-09", "2026-05-10"]
    svg = render_chart([ChartRow("r1", "<script>x</script>", "high", {"2026-05-09": 4})], days)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<title>2026-05-09: 4 hits</title>" in svg and svg.count("<rect") == 2


def test_chart_without_hits_says_so() -> None:
    """An empty period renders an empty chart with a message, not an error."""
    assert "No hits in this period." in render_chart([], days_ending(
        datetime.date(2026, 5, 10), 30))  # fmt: skip
