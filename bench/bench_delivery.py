"""Delivery and story clustering figures (make bench). Prints ratios against naive baselines
measured in the same run; never asserts on time.

1. Story lookup: StoryIndex (MinHash + LSH) vs a naive scan comparing the new article's
   signature with every stored one, over N stored articles.
2. Delivery throughput to a loopback receiver: per-sink worker vs sending every delivery one
   after the other with a fresh httpx client each (the naive way).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from monitor.sinks.http import AlertClient
from monitor.stories import StoryIndex, decode, signature, similarity
from receivers import running

WORDS = [f"w{n}" for n in range(5000)]


def article(rng: random.Random, n: int = 600) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def bench_stories(stored: int = 3000, probes: int = 200) -> None:
    rng = random.Random(1)
    index = StoryIndex()
    start = time.perf_counter()
    stored_sigs = []
    for n in range(stored):
        story, note = index.assign(article(rng))
        index.remember(n, story if story is not None else n, note)
        stored_sigs.append(decode(index.stored(note)))
    build = time.perf_counter() - start
    texts = [article(rng) for _ in range(probes)]
    start = time.perf_counter()
    for text in texts:
        index.assign(text)
    lsh = (time.perf_counter() - start) / probes
    start = time.perf_counter()
    for text in texts:
        sig = signature(text)
        max(similarity(sig, other) for other in stored_sigs)
    naive = (time.perf_counter() - start) / probes
    print(f"stories: {stored} stored (built in {build:.1f} s, {build / stored * 1e3:.2f} ms each)")
    print(f"  lookup with LSH  {lsh * 1e3:7.2f} ms/article")
    print(f"  naive full scan  {naive * 1e3:7.2f} ms/article   ratio naive/LSH {naive / lsh:.1f}x")


def bench_send(count: int = 300) -> None:
    with running() as receiver:
        url = receiver.url()
        client = AlertClient()
        start = time.perf_counter()
        for n in range(count):
            client.post("bench", url, b'{"n": %d}' % n, {"Content-Type": "application/json"},
                        allow_private=True)  # fmt: skip
        shared = time.perf_counter() - start
        client.close()
        start = time.perf_counter()
        for n in range(count):
            with httpx.Client() as fresh:
                fresh.post(url, content=b'{"n": %d}' % n)
        naive = time.perf_counter() - start
    print(f"send: {count} webhooks to 127.0.0.1")
    print(f"  one pinned keep-alive client  {count / shared:8.0f} req/s")
    print(
        f"  fresh client per request      {count / naive:8.0f} req/s   ratio {naive / shared:.1f}x"
    )


if __name__ == "__main__":
    bench_stories()
    bench_send()
