"""Hostile responses and feed bodies of RELIABILITY.md 3(a), generated at test time.

Routes are for tests/feedserver.py (raw bytes on the socket, so they can lie
about lengths, trickle or never end); bodies are the F-row feeds, a few lines
of code each, so nothing large is committed. Every endless route stops when
the client hangs up or the server is stopped.
"""

from __future__ import annotations

import functools
import gzip
import zlib

from feedserver import FeedServer, Request, Route, item, rss

MIB = 1024 * 1024


def trickle(server: FeedServer, every: float = 0.5) -> Route:
    """H1: 200 with Content-Length 100,000, then one byte every ``every`` seconds."""

    def route(request: Request) -> None:
        request.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100_000):
            request.wfile.write(b"x")
            request.wfile.flush()
            if server.stopping.wait(every):
                return

    return route


def silent(server: FeedServer) -> Route:
    """H2: accept the request and never send a status line."""
    return lambda request: server.stopping.wait(60) and None


def endless_zeros(request: Request) -> None:
    """H4: Content-Length 2 GiB, zeros streamed until the client hangs up."""
    request.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n")
    chunk = b"\0" * 65536
    for _ in range(32_768):
        request.wfile.write(chunk)


def endless_chunks(request: Request) -> None:
    """H6: a chunked body that never ends."""
    request.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"
    for _ in range(32_768):
        request.wfile.write(chunk)


@functools.cache
def gzip_bomb() -> bytes:
    """H7: 1 GiB of zeros as gzip, about 1.04 MB (built once, in 1 MiB steps)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * MIB
    return b"".join([*(z.compress(zeros) for _ in range(1024)), z.flush()])


@functools.cache
def gzip_gzip_bomb() -> bytes:
    """H8: the 1 GiB bomb gzipped again: 1,827 bytes labelled ``gzip, gzip``."""
    return gzip.compress(gzip_bomb(), compresslevel=9)


def encoded(body: bytes, encoding: str) -> Route:
    return lambda request: request.send(200, body, {"Content-Encoding": encoding})


def lying_length(declared: int, body: bytes) -> Route:
    """H5: a Content-Length that is not the length of what follows, then close."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    return lambda request: request.wfile.write(head.encode() + body)


def redirect(location: str, status: int = 302) -> Route:
    return lambda request: request.send(status, b"", {"Location": location})


def feed_route(body: bytes, content_type: str = "application/rss+xml") -> Route:
    return lambda request: request.send(200, body, {"Content-Type": content_type})


# --- F rows: feed bodies ------------------------------------------------------------------


def billion_laughs(one_line: bool) -> bytes:
    """F1: ten levels of ten references each, on separate lines or all on one."""
    levels = ['<!ENTITY l0 "ha">'] + [
        f'<!ENTITY l{n} "{("&l" + str(n - 1) + ";") * 10}">' for n in range(1, 10)
    ]
    doctype = "<!DOCTYPE rss [" + ("" if one_line else "\n").join(levels) + "]>"
    return rss([item(1, title="&l9;")], extra=doctype)


def quadratic_blowup() -> bytes:
    """F2: one 20 KB entity referenced 20,000 times (about 100 KB): 400 M characters."""
    doctype = f'<!DOCTYPE rss [<!ENTITY big "{"x" * 20_000}">]>'
    return rss([item(1, title="&big;" * 20_000)], extra=doctype)


def redos_author() -> bytes:
    """F10: ``a@`` + ``a.`` x 40,000 + ``!`` as the author (kurtmckee/feedparser#562)."""
    return rss([item(1, author="a@" + "a." * 40_000 + "!")])


def deep_nesting() -> bytes:
    """F11: 100,000 nested elements, and 200,000 nested <div> in a CDATA summary."""
    body = rss([item(1, description="<![CDATA[" + "<div>" * 200_000 + "]]>")])
    return body.replace(b"<item>", b"<item>" + b"<x>" * 100_000, 1)


def huge_fields() -> bytes:
    """F12: one item with a 5 MB title and a 10 MB description."""
    return rss([item(1, title="Zanzibar " + "T" * 5_000_000, description="word " * 2_000_000)])


def many_items(count: int = 50_000) -> bytes:
    """F13: ``count`` items in one feed, newest first."""
    return rss([item(n, title=f"Zanzibar item {n}") for n in range(count)])
