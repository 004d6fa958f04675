"""Where to put ``<mark>``: pure functions from match spans to text segments.

Match offsets index ``title + "\\n\\n" + body`` (contract 2). The templates
render each segment escaped, marked or not, so article text never becomes
markup whatever it contains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.domain import Match, snippet_around

Segment = tuple[str, bool]  # (text, is it matched)


@dataclass(frozen=True)
class Excerpt:
    """The sentence around the first match, with every match inside it marked."""

    segments: tuple[Segment, ...]
    starts_mid_text: bool
    ends_mid_text: bool
    other_matches: int  # matches outside this sentence


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping spans; overlapping or touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def mark(text: str, spans: Iterable[tuple[int, int]], lo: int = 0, hi: int | None = None
         ) -> tuple[Segment, ...]:  # fmt: skip
    """``text[lo:hi]`` cut into segments, the parts inside ``spans`` flagged True."""
    hi = len(text) if hi is None else hi
    segments: list[Segment] = []
    at = lo
    for start, end in merge_spans(spans):
        start, end = max(start, lo), min(end, hi)
        if start >= end:
            continue
        if start > at:
            segments.append((text[at:start], False))
        segments.append((text[start:end], True))
        at = end
    if at < hi:
        segments.append((text[at:hi], False))
    return tuple(segments)


def excerpt(text: str, matches: Sequence[Match], body_start: int = 0) -> Excerpt:
    """The sentence of the first match in the body (the title is shown on its own, so its
    sentence would repeat it), else of the first match, with the matches in it marked."""
    in_body = [m for m in matches if m.start >= body_start]
    if not matches:
        lo, hi = snippet_around(text, body_start, body_start)
        return Excerpt(mark(text, (), lo, hi), _cuts(text, lo - 1), _cuts(text, hi), 0)
    first = min(in_body or matches, key=lambda m: m.start)
    lo, hi = snippet_around(text, first.start, first.end)
    inside = [(m.start, m.end) for m in matches if m.start < hi and m.end > lo]
    return Excerpt(
        mark(text, inside, lo, hi),
        starts_mid_text=_cuts(text, lo - 1),
        ends_mid_text=_cuts(text, hi),
        other_matches=len(matches) - len(inside),
    )


def _cuts(text: str, at: int) -> bool:
    """Whether an excerpt edge at ``at`` cuts a paragraph (so it deserves an ellipsis)."""
    return 0 <= at < len(text) and text[at] != "\n"


def marked_article(
    title: str, text: str, matches: Sequence[Match]
) -> tuple[tuple[Segment, ...], list[tuple[Segment, ...]]]:
    """The title and the body's paragraphs (its lines, contract 2), every match marked."""
    spans = [(m.start, m.end) for m in matches]
    body = []
    at = len(title) + 2  # the text is title + "\n\n" + body
    for line in text[at:].split("\n"):
        if line.strip():
            body.append(mark(text, spans, at, at + len(line)))
        at += len(line) + 1
    return mark(text, spans, 0, len(title)), body
