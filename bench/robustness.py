"""`make robustness`: every file of the feedparser corpus through parse + normalise.

Usage: python bench/robustness.py CORPUS_DIR. Counts files parsed, feed errors
by reason, exceptions that escaped (must be 0) and fields over their caps
(must be 0). Exit 1 if either is not 0.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from monitor.errors import SourceError
from monitor.sources.normalise import MAX_BODY, MAX_TITLE, MAX_URL, normalise_feed
from monitor.sources.parse import ParserPool

CONTENT_TYPES = {".json": "application/feed+json", ".xml": "application/xml"}


def over_caps(article) -> list[str]:  # type: ignore[no-untyped-def]
    bad = []
    if len(article.title) > MAX_TITLE:
        bad.append("title")
    if len(article.body) > MAX_BODY:
        bad.append("body")
    if article.url is not None and (
        len(article.url) > MAX_URL or not article.url.startswith(("http://", "https://"))
    ):
        bad.append("url")
    if any("\x00" in f for f in (article.title, article.body, article.url or "")):
        bad.append("nul")
    return bad


@dataclass
class CorpusReport:
    files: int = 0
    entries: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # ok, not_a_feed, feed errors
    escaped: list[str] = field(default_factory=list)  # exceptions past the feed boundary
    capped: list[str] = field(default_factory=list)  # fields over their caps
    seconds: float = 0.0


def check_corpus(corpus: Path) -> CorpusReport:
    """Every file of ``corpus`` through the parse workers and normalise (the reliability
    suite's F6 and corpus figure use this too)."""
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix != ".md")
    report = CorpusReport(files=len(files))
    pool = ParserPool(2, timeout=10.0)
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        for path in files:
            headers = {"content-type": CONTENT_TYPES.get(path.suffix, "application/xml")}
            try:
                feed = pool.parse(path.name, path.read_bytes(), headers)
                articles = normalise_feed(path.name, feed, now)
            except SourceError as e:
                report.reasons[e.reason] += 1
                continue
            except Exception as e:  # the count we report: it must stay 0
                report.escaped.append(f"{path}: {type(e).__name__}: {e}")
                continue
            report.reasons["ok" if feed.version or feed.entries else "not_a_feed"] += 1
            report.entries += len(articles)
            report.capped += [f"{path}: {f}" for a in articles for f in over_caps(a)]
    finally:
        pool.close()
    report.seconds = time.perf_counter() - started
    return report


def main(corpus: Path) -> int:
    if not corpus.is_dir():
        print(f"robustness: {corpus} not found; skipped")
        return 0
    report = check_corpus(corpus)
    print(f"files: {report.files}  entries: {report.entries}  time: {report.seconds:.1f}s")
    for reason, n in report.reasons.most_common():
        print(f"  {reason:28} {n}")
    print(f"escaped exceptions: {len(report.escaped)}")
    print(f"fields over cap:    {len(report.capped)}")
    for line in (report.escaped + report.capped)[:20]:
        print("  " + line)
    return 1 if report.escaped or report.capped else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpus/feedparser")))
