"""`make robustness`: every file of the feedparser corpus through parse + normalise.

Usage: python bench/robustness.py CORPUS_DIR. Counts files parsed, feed errors
by reason, exceptions that escaped (must be 0) and fields over their caps
(must be 0). Exit 1 if either is not 0.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
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


def main(corpus: Path) -> int:
    if not corpus.is_dir():
        print(f"robustness: {corpus} not found; skipped")
        return 0
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix != ".md")
    pool = ParserPool(2, timeout=10.0)
    reasons: Counter[str] = Counter()
    escaped: list[str] = []
    capped: list[str] = []
    entries = 0
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        for path in files:
            headers = {"content-type": CONTENT_TYPES.get(path.suffix, "application/xml")}
            try:
                feed = pool.parse(path.name, path.read_bytes(), headers)
                articles = normalise_feed(path.name, feed, now)
            except SourceError as e:
                reasons[e.reason] += 1
                continue
            except Exception as e:  # the count we report: it must stay 0
                escaped.append(f"{path}: {type(e).__name__}: {e}")
                continue
            reasons["ok" if feed.version or feed.entries else "not_a_feed"] += 1
            entries += len(articles)
            capped += [f"{path}: {f}" for a in articles for f in over_caps(a)]
    finally:
        pool.close()
    elapsed = time.perf_counter() - started
    print(f"files: {len(files)}  entries: {entries}  time: {elapsed:.1f}s")
    for reason, n in reasons.most_common():
        print(f"  {reason:28} {n}")
    print(f"escaped exceptions: {len(escaped)}")
    print(f"fields over cap:    {len(capped)}")
    for line in (escaped + capped)[:20]:
        print("  " + line)
    return 1 if escaped or capped else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpus/feedparser")))
