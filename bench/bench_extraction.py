"""What a rule sees of an ``.html`` folder file, against the article a person marked.

The corpus is the article-extraction benchmark's (scrapinghub/article-extraction-benchmark):
181 real news and blog pages (``html/<id>.html.gz``) and, in ``ground-truth.json``, each
page's ``articleBody``. It is read at run time from ``../shared/corpus/article-extraction``
(beside the repository; ``--corpus`` to point elsewhere) and never copied here; without
it the bench prints one line and exits 0.

Each page is saved as an ``.html`` file and read twice:

- before: the visible text of the whole page (``formats.visible_text``, the reading
  every ``.html`` file got, kept now as the fallback for a page without main text);
- after: ``read_file``, as the folder source reads it (``pagetext``: trafilatura's main
  text, the page's title).

Scored as the benchmark scores extractors (its ``evaluate.py``; the scorer is written
here): tokens are ``\\w+``, a text's shingles are its runs of 4 tokens (a text of 1-3
tokens is one shingle), and per page the multiset counts of shingles found in both (tp),
only in the reading (fp) and only in ``articleBody`` (fn) are divided by their sum.
Precision is the mean of tp / (tp + fp) over the pages with tp + fp > 0, recall the
mean of tp / (tp + fn) over the pages with tp + fn > 0, and F1 comes from those two
means; a page where both texts are empty scores 1 in both. Each reading is scored on
its body alone and on title + body (``Article.text``: what a rule sees).

The boilerplate figure: a query made only of words of a page's furniture, the pages it
fires on, and the pages where none of its matches lies in the article: a match lies in
it when the match's words, with up to 3 tokens either side on its line, occur in that
order in ``articleBody`` (case-insensitive). Some marked bodies are cut short ("..."),
so a true match after the cut counts as outside: the figure is an upper bound.

``--settings`` also scores trafilatura's options (precision or recall bias, tables,
fast mode, deduplication) on the same pages, body alone, so that the choice kept in
``monitor/sources/pagetext.py`` can be checked again on a new trafilatura.

Times are this process's CPU time per page (``time.process_time``), so that other work on
the machine does not inflate them.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_extraction.py [--settings]``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trafilatura

from monitor.domain import Article, Rule
from monitor.errors import SourceError
from monitor.match import match_article
from monitor.query import parse_query
from monitor.sources import formats, pagetext
from monitor.sources.folder import DEFAULT_MAX_BYTES, read_file

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "article-extraction"
GOAL_F1 = 0.95
PUBLISHED = "published F1: trafilatura 0.958, plain visible text 0.665"
BOILERPLATE = (
    'cookie* OR newsletter OR subscribe OR "privacy policy" OR trending '
    'OR "related articles" OR advertisement'
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHINGLE = 4
CONTEXT = 3  # tokens either side of a match that must also be the article's
_TOKEN = re.compile(r"\w+")

Scores = tuple[float, float, float]  # precision, recall, F1
Row = tuple[str, Scores, float]  # name, scores, ms/page


# --- the benchmark's scoring ----------------------------------------------------


def shingles(text: str) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text)
    if 0 < len(tokens) < SHINGLE:
        return Counter([tuple(tokens)])
    return Counter(tuple(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1))


def page_counts(true: str, predicted: str) -> tuple[float, float, float]:
    """tp, fp, fn of one page as fractions of their sum (a long page weighs as a short one)."""
    want, got = shingles(true), shingles(predicted)
    tp = sum((want & got).values())
    fp, fn = sum((got - want).values()), sum((want - got).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def score(counts: Iterable[tuple[float, float, float]]) -> Scores:
    """Precision, recall and F1 over pages, as the benchmark averages them."""
    precisions, recalls = [], []
    for tp, fp, fn in counts:
        if tp == fp == fn == 0:  # both empty: nothing to find and nothing wrong
            precisions.append(1.0)
            recalls.append(1.0)
            continue
        if tp + fp > 0:
            precisions.append(tp / (tp + fp))
        if tp + fn > 0:
            recalls.append(tp / (tp + fn))
    precision = sum(precisions) / len(precisions) if precisions else 0.0
    recall = sum(recalls) / len(recalls) if recalls else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# --- the corpus and the two readings --------------------------------------------


@dataclass(frozen=True)
class Page:
    id: str
    html: bytes
    body: str  # articleBody, as a person marked it


@dataclass
class Reading:
    name: str
    articles: dict[str, Article]  # page id -> what a rule sees
    seconds: float
    fallbacks: int = 0  # pages read as visible text
    errors: int = 0  # pages that were the file's error (no article)


def load_corpus(root: Path) -> list[Page]:
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for n, (page_id, item) in enumerate(sorted(truth.items()), 1):
        html = gzip.decompress((root / "html" / f"{page_id}.html.gz").read_bytes())
        pages.append(Page(page_id, html, item.get("articleBody") or ""))
        progress("loading", n, len(truth))
    return pages


def progress(what: str, n: int, total: int) -> None:
    """A counter line on stderr every 50 pages (and at the last), so a log stays short."""
    if n % 50 == 0 or n == total:
        print(f"  {what}: {n}/{total}", file=sys.stderr, flush=True)


def read_before(pages: list[Page]) -> Reading:
    """The visible text of the whole page, as every ``.html`` file was read."""
    articles, seconds = {}, 0.0
    for n, page in enumerate(pages, 1):
        started = time.process_time()
        text = formats.decode(page.html, "bench", page.id)
        title, lines = formats.visible_text(text, "bench", page.id)
        if lines[:1] == [title]:
            lines = lines[1:]
        title = formats.cap_title(title)
        body = formats.cap_body(formats.clean("\n".join(lines)).strip())
        seconds += time.process_time() - started
        articles[page.id] = Article("bench", page.id, title, body, None, None, NOW)
        progress("before: visible text", n, len(pages))
    return Reading("before: visible text", articles, seconds)


class _Fallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "read as visible text" in record.getMessage()


def read_after(pages: list[Page], folder: Path) -> Reading:
    """``read_file`` on each page saved as an ``.html`` file: what the folder source reads."""
    paths = []
    for page in pages:
        path = folder / f"{page.id}.html"
        path.write_bytes(page.html)
        paths.append(path)
    fallbacks = _Fallbacks()
    logger = logging.getLogger("monitor.sources.formats")
    logger.addHandler(fallbacks)
    logger.propagate = False  # counted here, not printed over the table
    reading = Reading("after: main text", {}, 0.0)
    try:
        for n, (page, path) in enumerate(zip(pages, paths, strict=True), 1):
            started = time.process_time()
            try:
                found = read_file(path, source="bench", fetched_at=NOW, max_bytes=DEFAULT_MAX_BYTES)
            except SourceError:
                found = []
                reading.errors += 1
            reading.seconds += time.process_time() - started
            empty = Article("bench", page.id, "", "", None, None, NOW)
            reading.articles[page.id] = found[0] if found else empty
            progress("after: main text", n, len(pages))
    finally:
        logger.removeHandler(fallbacks)
        logger.propagate = True
    reading.fallbacks = fallbacks.count
    return reading


# --- the boilerplate query ------------------------------------------------------


def boilerplate_hits(reading: Reading, pages: list[Page]) -> tuple[int, int]:
    """Pages the boilerplate query fires on, and those where no match is the article's."""
    rule = Rule(id="boilerplate", title="boilerplate", query=BOILERPLATE, notify=())
    rules = [(rule, parse_query(BOILERPLATE))]
    fired = outside = 0
    for page in pages:
        article = reading.articles[page.id]
        hits = match_article(rules, article)
        if not hits:
            continue
        fired += 1
        body = f" {' '.join(_TOKEN.findall(page.body.lower()))} "
        spans = [(m.start, m.end) for hit in hits for m in hit.matches]
        outside += not any(_in_article(article.text, start, end, body) for start, end in spans)
    return fired, outside


def _in_article(text: str, start: int, end: int, body: str) -> bool:
    """Whether the match, with its neighbours on the same line, is a run of the body."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : len(text) if line_end < 0 else line_end].lower()
    before = _TOKEN.findall(line[: start - line_start])[-CONTEXT:]
    match = _TOKEN.findall(line[start - line_start : end - line_start])
    after = _TOKEN.findall(line[end - line_start :])[:CONTEXT]
    return f" {' '.join(before + match + after)} " in body


# --- trafilatura's options ------------------------------------------------------

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("defaults, no tables", {"include_tables": False}),
    ("favor_precision (kept)", {"favor_precision": True}),
    ("favor_precision, no tables", {"favor_precision": True, "include_tables": False}),
    ("favor_recall", {"favor_recall": True}),
    ("fast", {"fast": True}),
    ("favor_precision, fast", {"favor_precision": True, "fast": True}),
    ("favor_precision, deduplicate", {"favor_precision": True, "deduplicate": True}),
]


def score_settings(pages: list[Page]) -> list[Row]:
    """Each option set on the same tree preparation as ``pagetext`` (body alone)."""
    rows = []
    for name, options in SETTINGS:
        counts, seconds = [], 0.0
        for page in pages:
            started = time.process_time()
            tree = trafilatura.load_html(formats.decode(page.html, "bench", page.id))
            text = None
            if tree is not None:
                tree = pagetext.as_shown(tree)
                text = trafilatura.extract(
                    tree, include_comments=False, include_images=False, **options
                )
            seconds += time.process_time() - started
            counts.append(page_counts(page.body, text or ""))
        rows.append((name, score(counts), seconds * 1000 / len(pages)))
        progress("settings", len(rows), len(SETTINGS))
    return rows


# --- report ---------------------------------------------------------------------


def table(rows: list[Row], label: str = "reading") -> None:
    print(f"{label:<36} {'precision':>9} {'recall':>7} {'F1':>6} {'ms/page':>8}")
    for name, (precision, recall, f1), ms in rows:
        print(f"{name:<36} {precision:>9.3f} {recall:>7.3f} {f1:>6.3f} {ms:>8.1f}")


def scored(reading: Reading, pages: list[Page], text: Callable[[Article], str]) -> Scores:
    counts = [page_counts(page.body, text(reading.articles[page.id])) for page in pages]
    return score(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--settings", action="store_true", help="also score trafilatura options")
    args = parser.parse_args()
    if not (args.corpus / "ground-truth.json").is_file():
        print(f"article-extraction corpus not found at {args.corpus}: nothing to measure")
        return 0
    # trafilatura logs its verdict on many pages; the table is the output here.
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    pages = load_corpus(args.corpus)
    before = read_before(pages)
    with tempfile.TemporaryDirectory(prefix="bench-extraction-") as folder:
        after = read_after(pages, Path(folder))

    rows: list[Row] = []
    for reading in (before, after):
        ms = reading.seconds * 1000 / len(pages)
        rows.append((f"{reading.name}, body", scored(reading, pages, lambda a: a.body), ms))
        rows.append((f"{reading.name}, title + body", scored(reading, pages, lambda a: a.text), ms))
    print(f"{len(pages)} pages of {args.corpus}")
    table(rows)
    f1 = rows[-1][1][2]
    verdict = "met" if f1 >= GOAL_F1 else "missed"
    print(f"goal F1 >= {GOAL_F1} on what a rule sees (after, title + body): {verdict} ({f1:.3f})")
    print(PUBLISHED)
    print(f"after: {after.fallbacks} page(s) read as visible text (no main text), "
          f"{after.errors} refused")  # fmt: skip

    print("\n" + textwrap.fill(f"boilerplate query: {BOILERPLATE}", 79, subsequent_indent="  "))
    print(f"{'reading':<36} {'pages it fires on':>18} {'none in the article':>20}")
    for reading in (before, after):
        fired, outside = boilerplate_hits(reading, pages)
        print(f"{reading.name:<36} {fired:>18} {outside:>20}")

    if args.settings:
        print("\ntrafilatura options, body alone, the tree prepared as in pagetext (the folder")
        print("also drops a first line equal to the title, so 'after' scores a little apart):")
        table(score_settings(pages), "options")
    return 0


if __name__ == "__main__":
    sys.exit(main())
