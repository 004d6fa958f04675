"""Optional full text (issue #3 item 6): what a page costs, against a naive baseline.

A loopback server (a thread of this process) serves article pages of about 4.5 KiB
(navigation, a story of 10 paragraphs, related links, a footer). Measured:

- extraction alone: trafilatura's main text vs the naive baseline, nh3's
  HTML -> text of the whole page (which keeps the boilerplate: menus and footers
  would then match rules);
- ``add_full_text`` for a poll of ``--pages`` new items through the real Fetcher
  (bounded fetch + extraction, 4 at a time), and the cost per page.

Usage: python bench/bench_fulltext.py [--pages 200]
"""

from __future__ import annotations

import argparse
import http.server
import socketserver
import threading
import time
from datetime import UTC, datetime

from monitor.domain import Article
from monitor.sources.fetch import Fetcher
from monitor.sources.fulltext import add_full_text
from monitor.sources.normalise import html_to_text
from monitor.sources.pagetext import extract_main_text


def make_page(n: int) -> bytes:
    nav = "".join(f"<li><a href='/s/{k}'>Section {k}</a></li>" for k in range(30))
    story = "".join(
        f"<p>Paragraph {k} of story {n}: officials in Seoul and Washington discussed the "
        f"latest launch, the sanctions regime and the prospects for talks, analysts said "
        f"on day {k} of the week, adding that verification remained the main obstacle.</p>"
        for k in range(10)
    )
    related = "".join(f"<li><a href='/a/{n + k}'>Related story {n + k}</a></li>" for k in range(20))
    return (
        f"<!DOCTYPE html><html><head><title>Story {n}</title></head><body>"
        f"<header><ul>{nav}</ul></header><main><article><h1>Story {n}</h1>{story}</article>"
        f"<aside><ul>{related}</ul></aside></main>"
        "<footer>Copyright 2026 Example News. Terms. Privacy. Contact.</footer></body></html>"
    ).encode()


def serve(pages: dict[str, bytes]) -> socketserver.ThreadingTCPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    pages = {f"/a/{n}": make_page(n) for n in range(args.pages)}
    size = sum(map(len, pages.values())) / len(pages)

    started = time.perf_counter()
    naive = [html_to_text(body.decode()) for body in pages.values()]
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    main_text = [extract_main_text("bench", body).text for body in pages.values()]
    extract_s = time.perf_counter() - started
    print(f"pages: {len(pages)} of {size / 1024:.1f} KiB")
    print(f"naive nh3 whole-page text: {naive_s * 1000 / len(pages):.2f} ms/page, "
          f"{sum(map(len, naive)) / len(naive):.0f} chars kept")  # fmt: skip
    print(f"trafilatura main text:     {extract_s * 1000 / len(pages):.2f} ms/page, "
          f"{sum(map(len, main_text)) / len(main_text):.0f} chars kept")  # fmt: skip
    print(f"extraction ratio trafilatura/naive: {extract_s / naive_s:.1f}x")

    server = serve(pages)
    port = server.server_address[1]
    now = datetime.now(UTC)
    articles = [
        Article(
            "bench", f"k{n}", f"Story {n}", "Teaser.", f"http://127.0.0.1:{port}/a/{n}", None, now
        )
        for n in range(args.pages)
    ]
    fetcher = Fetcher(allow_private=True)
    try:
        started = time.perf_counter()
        out = add_full_text(fetcher, "bench", articles, allow_private=True, max_pages=args.pages)
        poll_s = time.perf_counter() - started
    finally:
        fetcher.close()
        server.shutdown()
    replaced = sum(1 for a in out if a.body != "Teaser.")
    print(f"add_full_text (fetch + extract, loopback): {poll_s:.2f} s for {args.pages} pages, "
          f"{poll_s * 1000 / args.pages:.2f} ms/page, {replaced} bodies replaced")  # fmt: skip
    print(f"a capped poll (20 pages) costs about {poll_s / args.pages * 20:.2f} s here")


if __name__ == "__main__":
    main()
