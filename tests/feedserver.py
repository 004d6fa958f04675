"""A scripted HTTP server on 127.0.0.1 for the feed tests (RELIABILITY.md 3.0).

Each path is a behaviour written as raw bytes on the socket, so a test can
lie about Content-Length, trickle bytes, never answer, or stack encodings.
It counts requests per path and keeps the request headers it saw.
"""

from __future__ import annotations

import hashlib
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    wfile: Any
    connection: Any

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """A complete response with a correct Content-Length unless the route gave one."""
        head = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in head.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


Route = Callable[[Request], None]


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    seen: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FeedServer:
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(65536).decode("latin-1")
                if not line:
                    return
                path = line.split(" ")[1] if " " in line else "/"
                headers = {}
                while h := self.rfile.readline(65536).decode("latin-1").strip():
                    name, _, value = h.partition(":")
                    headers[name.strip().lower()] = value.strip()
                request = Request(path, headers, self.wfile, self.connection)
                server.counts[path.split("?")[0]] += 1
                server.seen.append(request)
                route = server.routes.get(path.split("?")[0])
                try:
                    if route is None:
                        request.send(404, b"no such route")
                    else:
                        route(request)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on us: that is what many tests want

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256  # three replicas fetch 20 feeds each at once (listen backlog)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


def rss(items: list[dict[str, str]], ttl: str | None = None, extra: str = "") -> bytes:
    """A small RSS 2.0 document; each item dict gives guid/link/title/description/pubDate."""
    parts = []
    for item in items:
        fields = "".join(f"<{k}>{v}</{k}>" for k, v in item.items())
        parts.append(f"<item>{fields}</item>")
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'{extra}<rss version="2.0"><channel><title>Fixture</title>{ttl_tag}'
        f"{''.join(parts)}</channel></rss>"
    ).encode()


def item(n: int, **fields: str) -> dict[str, str]:
    """A plain item number ``n`` with a recent date; keyword arguments override fields."""
    base = {
        "guid": f"urn:item:{n}",
        "link": f"https://news.example/a/{n}",
        "title": f"Item {n}",
        "description": f"<p>Body of item {n}.</p>",
        "pubDate": formatdate(usegmt=True),
    }
    return {**base, **fields}


# --- feeds whose items grow over time (the replica fault test) ---------------------------


@dataclass(frozen=True)
class Fetch:
    """One request for one growing feed, as the server saw it."""

    feed: int
    at: float  # time.monotonic() when the request arrived
    status: int  # 200 or 304: both are fetches
    items: int  # items in the feed at that moment (what a 200 served)


class GrowingFeeds:
    """``count`` RSS feeds on one FeedServer; feed i starts with ``initial`` items and gains
    one every ``period`` seconds (phase-shifted per feed) until ``freeze()``.

    Items whose number is not ``2 mod 3`` carry the word "Zanzibar" (the test's rule);
    every item's text is distinct, so no two are near-duplicates of one story. ETags make
    an unchanged feed answer 304. Every request is logged with its arrival time.
    """

    def __init__(self, server: FeedServer, count: int, period: float, initial: int = 2):
        self.server, self.count, self.period, self.initial = server, count, period, initial
        self.started = time.monotonic()
        self.frozen_at: float | None = None
        self.fetches: list[Fetch] = []
        self.changed = threading.Condition()
        for i in range(count):
            server.routes[self.path(i)] = lambda request, i=i: self.serve(i, request)

    @staticmethod
    def path(i: int) -> str:
        return f"/feeds/{i}.xml"

    @staticmethod
    def is_match(n: int) -> bool:
        return n % 3 != 2

    @staticmethod
    def link(i: int, n: int) -> str:
        return f"https://news.example/feed{i}/item{n}"

    def items_at(self, i: int, at: float) -> int:
        end = at if self.frozen_at is None else min(at, self.frozen_at)
        return self.initial + int(max(0.0, end - self.started) / self.period + (i % 10) / 10)

    def freeze(self) -> dict[int, int]:
        """Stop the growth; returns each feed's final item count."""
        self.frozen_at = time.monotonic()
        return {i: self.items_at(i, self.frozen_at) for i in range(self.count)}

    def serve(self, i: int, request: Request) -> None:
        at = time.monotonic()
        n = self.items_at(i, at)
        etag = f'"{i}-{n}"'
        status = 304 if request.headers.get("if-none-match") == etag else 200
        with self.changed:
            self.fetches.append(Fetch(i, at, status, n))
            self.changed.notify_all()
        if status == 304:
            request.send(304, headers={"ETag": etag})
            return
        body = rss([self.item(i, k) for k in range(n)])
        request.send(200, body, {"Content-Type": "application/rss+xml", "ETag": etag})

    def item(self, i: int, n: int) -> dict[str, str]:
        words = " ".join(hashlib.sha256(f"{i}-{n}-{k}".encode()).hexdigest()[:8] for k in range(12))
        topic = "Zanzibar" if self.is_match(n) else "Harbour"
        return item(n, guid=f"urn:feed{i}:item{n}", link=self.link(i, n),
                    title=f"{topic} dispatch {i}-{n}", description=f"<p>{words}</p>")  # fmt: skip
