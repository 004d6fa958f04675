"""A scripted HTTP server on 127.0.0.1 for the feed tests (RELIABILITY.md 3.0).

Each path is a behaviour written as raw bytes on the socket, so a test can
lie about Content-Length, trickle bytes, never answer, or stack encodings.
It counts requests per path and keeps the request headers it saw.
"""

from __future__ import annotations

import socketserver
import threading
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
