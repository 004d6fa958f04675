"""Feed polling through the real pipeline, against the feedparser-only floor.

2,000 feeds of 50 items (about 1 KB of HTML each) are served by a loopback
server in a child process (so its memory is not ours); the pipeline polls
them all (first pass: 200 + parse + match + store), then again (second pass:
every feed answers 304). The floor is feedparser alone on the same bytes, in
one process. The server makes every body before the clock starts, so that
its CPU is not counted against the pipeline. Also measured: feedparser's
sanitizer on/off, and nh3 against lxml for HTML -> text.

Usage: python bench/bench_feeds.py [--feeds 2000] [--items 50]
Goals (issue #3): first pass <= 60 s, second pass >= 10x cheaper, pipeline
<= 1.5x the parse floor, peak RSS <= 300 MiB.
"""

from __future__ import annotations

import argparse
import http.server
import io
import multiprocessing
import os
import platform
import random
import resource
import shutil
import socketserver
import sys
import tempfile
import time
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Neutral news words; one item in ten also carries a sentence on the sample beat, so the
# rule set (config/watchlists) has candidates and hits at a plausible rate.
WORDS = [
    "market",
    "prices",
    "rose",
    "city",
    "council",
    "weather",
    "week",
    "officials",
    "said",
    "local",
    "school",
    "budget",
    "plan",
    "company",
    "shares",
    "quarter",
    "growth",
    "season",
    "team",
    "players",
    "road",
    "project",
    "water",
    "energy",
    "report",
]
VOCABULARY = WORDS + [
    "".join(random.Random(k).choice("bcdfghjklmnprstvwz") + random.Random(k + 1).choice("aeiou")
            for _ in range(3)) + str(k)
    for k in range(5000)
]  # fmt: skip
BEAT = "Kim Jong Un met Putin in Pyongyang for summit talks on UN sanctions and Matsegora."


def feed_bytes(n: int, items: int) -> bytes:
    """Feed number ``n``: deterministic, distinct items of about 1 KB of HTML each."""
    parts = []
    date = formatdate(1_760_000_000 + n * 60, usegmt=True)
    for i in range(items):
        rng = random.Random(n * 1000 + i)  # distinct text per item: no false near-duplicates
        words = [rng.choice(VOCABULARY) for _ in range(150)]
        paragraphs = "".join(f"<p>{' '.join(words[j : j + 30])}.</p>" for j in range(0, 150, 30))
        if (n + i) % 10 == 0:
            paragraphs += f"<p>{BEAT}</p>"
        parts.append(
            f"<item><guid>urn:feed{n}:item{i}</guid><link>https://news.example/{n}/{i}"
            f"?utm_source=rss</link><title>Report {n}-{i}: {words[0]} {words[1]}</title>"
            f"<pubDate>{date}</pubDate><description><![CDATA[{paragraphs}]]></description></item>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Feed {n}</title>{''.join(parts)}</channel></rss>"
    ).encode()


def serve(port_queue: multiprocessing.Queue, feeds: int, items: int) -> None:  # type: ignore[type-arg]
    # Every body is made before the port is announced: generating them per request cost
    # the server ~8 ms of CPU a feed, taken from the pipeline on a 2-core machine.
    bodies = [feed_bytes(n, items) for n in range(feeds)]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            n = int(self.path.strip("/").split("/")[-1])
            etag = f'"f{n}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = bodies[n]
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def rss_mib() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, children


def parse_floor(feeds: list[bytes], sanitize: bool) -> float:
    import feedparser

    started = time.perf_counter()
    for body in feeds:
        feedparser.parse(body, sanitize_html=sanitize, resolve_relative_uris=sanitize)
    return time.perf_counter() - started


def html_to_text_compare(bodies: list[str]) -> tuple[float, float]:
    import lxml.html

    from monitor.sources.normalise import html_to_text

    started = time.perf_counter()
    for body in bodies:
        html_to_text(body)
    nh3_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for body in bodies:
        root = lxml.html.fromstring(body)
        for bad in root.xpath("//script|//style"):
            bad.drop_tree()
        "\n".join(t.strip() for t in root.itertext() if t.strip())
    return nh3_seconds, time.perf_counter() - started


def run_pipeline(port: int, count: int) -> tuple[float, float, int, int]:
    from monitor.config import load_config
    from monitor.pipeline import Pipeline
    from monitor.sinks.console import ConsoleSink
    from monitor.store import Store

    work = Path(tempfile.mkdtemp(prefix="bench-feeds-"))
    try:
        # The sample watchlists name seed files as labelled examples, relative to themselves.
        shutil.copytree(ROOT / "config" / "watchlists", work / "config" / "watchlists")
        shutil.copytree(ROOT / "seeds", work / "seeds")
        work = work / "config"
        feeds = "".join(
            f"    - {{name: f{n}, url: 'http://127.0.0.1:{port}/feed/{n}', interval: 1h}}\n"
            for n in range(count)
        )
        (work / "monitor.yaml").write_text(
            "database: sqlite:///m.db\nwatchlists: [watchlists/*.yaml]\n"
            f"sources:\n  feeds:\n{feeds}fetch: {{allow_private_networks: true}}\n"
        )
        config = load_config(work / "monitor.yaml", env={})
        store = Store(config.database_url)
        pipeline = Pipeline(config, store, {"console": ConsoleSink(file=io.StringIO())})
        try:
            started = time.perf_counter()
            first = pipeline.poll_all()
            hits = sum(s.hits for s in first)
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            second = pipeline.poll_all()
            second_seconds = time.perf_counter() - started
        finally:
            pipeline.close()
            store.close()
        errors = [s.error for s in first + second if s.error]
        if errors:
            print(f"feed errors: {len(errors)}, e.g. {errors[:3]}")
        print(f"hits on the first pass: {hits}")
        return first_seconds, second_seconds, sum(s.new_articles for s in first), len(errors)
    finally:
        shutil.rmtree(work.parent)


def main() -> int:
    args = argparse.ArgumentParser()
    args.add_argument("--feeds", type=int, default=2000)
    args.add_argument("--items", type=int, default=50)
    opts = args.parse_args()
    spawn = multiprocessing.get_context("spawn")
    ports = spawn.Queue()
    server = spawn.Process(target=serve, args=(ports, opts.feeds, opts.items), daemon=True)
    server.start()
    port = ports.get(timeout=600)
    try:
        first, second, articles, errors = run_pipeline(port, opts.feeds)
    finally:
        server.kill()
    me, children = rss_mib()
    bodies = [feed_bytes(n, opts.items) for n in range(opts.feeds)]
    floor = parse_floor(bodies, sanitize=False)
    sample = bodies[:200]
    sanitize_on = parse_floor(sample, sanitize=True)
    sanitize_off = parse_floor(sample, sanitize=False)
    html = [feed_bytes(0, 1).decode().split("<![CDATA[")[1].split("]]>")[0]] * 5000
    nh3_s, lxml_s = html_to_text_compare(html)

    import feedparser
    import httpx

    n = opts.feeds
    mib = sum(map(len, bodies)) / 2**20
    print(f"python {platform.python_version()}, feedparser {feedparser.__version__}, "
          f"httpx {httpx.__version__}, cores {os.cpu_count()}")  # fmt: skip
    print(
        f"{n} feeds x {opts.items} items, {mib:.0f} MiB of feed bytes, {articles} articles stored"
    )
    print(f"{'measure':44} {'value':>12}")
    rows = [
        ("first pass (200, parse, match, store) s", f"{first:.1f}"),
        ("first pass feeds/s", f"{n / first:.0f}"),
        ("second pass (all 304) s", f"{second:.2f}"),
        ("second pass feeds/s", f"{n / second:.0f}"),
        ("second pass cheaper by (goal >= 10x)", f"{first / second:.1f}x"),
        ("feedparser floor, 1 core, same bytes s", f"{floor:.1f}"),
        ("pipeline / floor (goal <= 1.5x)", f"{first / floor:.2f}x"),
        ("pipeline / floor split over 2 cores", f"{first / (floor / 2):.2f}x"),
        ("peak RSS daemon process MiB (goal <= 300)", f"{me:.0f}"),
        ("peak RSS largest child (worker/server) MiB", f"{children:.0f}"),
        ("feedparser sanitizer on, ms/feed", f"{sanitize_on / len(sample) * 1000:.1f}"),
        ("feedparser sanitizer off, ms/feed", f"{sanitize_off / len(sample) * 1000:.1f}"),
        ("sanitizer cost ratio", f"{sanitize_on / sanitize_off:.2f}x"),
        ("HTML->text nh3, us/item", f"{nh3_s / len(html) * 1e6:.0f}"),
        ("HTML->text lxml, us/item", f"{lxml_s / len(html) * 1e6:.0f}"),
        ("lxml / nh3", f"{lxml_s / nh3_s:.2f}x"),
        ("feed errors (must be 0)", str(errors)),
    ]
    for name, value in rows:
        print(f"{name:44} {value:>12}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
