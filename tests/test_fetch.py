"""The bounded, SSRF-guarded fetcher (G1, G2) against hostile loopback servers (H1-H15, H22, H23).

Deadlines are short here (1.5 s total, 1 s read) so the slow cases stay fast.
"""

from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer, Request, Route
from hostile_rows import row

from monitor.errors import FetchError
from monitor.netguard import is_forbidden_address
from monitor.sources.fetch import DECODE_STEP, Fetcher, FetchLimits, _decoder

LIMITS = FetchLimits(timeout=1.5, connect=1.0, read=1.0, max_bytes=1 << 20)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(LIMITS, allow_private=True)
    yield f
    f.close()


def reason(fetcher: Fetcher, url: str) -> str:
    with pytest.raises(FetchError) as info:
        fetcher.fetch("t", url)
    return info.value.reason


def trickle(server: FeedServer) -> Route:
    """A body of 100,000 declared bytes sent one byte every 0.2 s (the server's own pace)."""

    def route(request: Request) -> None:
        request.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(1000):
            request.wfile.write(b"x")
            request.wfile.flush()
            if server.stopping.wait(0.2):
                return

    return route


def test_plain_200_returns_body_and_headers(server: FeedServer, fetcher: Fetcher) -> None:
    """A normal response comes back with its body, its validators and our User-Agent sent."""
    server.routes["/ok"] = lambda r: r.send(200, b"<rss/>", {"ETag": '"v1"'})
    result = fetcher.fetch("t", server.url("/ok"))
    assert (result.status_code, result.body, result.headers["etag"]) == (200, b"<rss/>", '"v1"')
    assert server.seen[0].headers["user-agent"].startswith("monitor/")
    assert server.seen[0].headers["accept-encoding"] == "gzip"


def test_conditional_request_sends_validators_and_304_has_no_body(
    server: FeedServer, fetcher: Fetcher
) -> None:
    """ETag and Last-Modified go out as If-None-Match / If-Modified-Since; a 304 is a result."""
    server.routes["/etag"] = lambda r: r.send(304, b"", {"ETag": '"v1"'})
    result = fetcher.fetch("t", server.url("/etag"), etag='"v1"', last_modified="Mon, 01 Jan 2024")
    assert result.not_modified and result.body == b""
    assert server.seen[0].headers["if-none-match"] == '"v1"'
    assert server.seen[0].headers["if-modified-since"] == "Mon, 01 Jan 2024"


@row("H1")
def test_h1_slow_loris_body_stops_at_total_deadline(server: FeedServer, fetcher: Fetcher) -> None:
    """H1: a body trickled byte by byte is cut off by the total deadline, not the read timeout."""
    server.routes["/slow-body"] = trickle(server)
    assert reason(fetcher, server.url("/slow-body")) == "deadline_exceeded"


@row("H2")
def test_h2_slow_headers_time_out(server: FeedServer, fetcher: Fetcher) -> None:
    """H2: a server that accepts and never answers fails the fetch by timeout."""
    server.routes["/slow-headers"] = lambda r: server.stopping.wait(5) and None
    assert reason(fetcher, server.url("/slow-headers")) in ("read_timeout", "deadline_exceeded")


@row("H3")
def test_h3_connection_refused(fetcher: Fetcher) -> None:
    """H3: a closed port is an immediate connection_refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert reason(fetcher, f"http://127.0.0.1:{port}/") == "connection_refused"


def stream_zeros(request: Request, head: bytes) -> None:
    request.wfile.write(head)
    chunk = b"\0" * 65536
    for _ in range(40_000):  # stops when the client hangs up (BrokenPipe)
        request.wfile.write(chunk)


@row("H4")
def test_h4_endless_body_stops_at_cap(server: FeedServer, fetcher: Fetcher) -> None:
    """H4: a '2 GB' body is cut at the byte cap."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n"
    server.routes["/huge"] = lambda r: stream_zeros(r, head)
    assert reason(fetcher, server.url("/huge")) == "body_too_large"


@row("H5")
def test_h5_short_body_against_content_length_is_an_error(
    server: FeedServer, fetcher: Fetcher
) -> None:
    """H5: declaring 10 MB and closing after 100 bytes is a protocol error, not a short feed."""
    lie = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n" + b"a" * 100
    server.routes["/short"] = lambda r: r.wfile.write(lie)
    assert reason(fetcher, server.url("/short")) == "protocol_error"


@row("H5")
def test_h5_long_body_is_read_only_to_its_declared_length(
    server: FeedServer, fetcher: Fetcher
) -> None:
    """H5: declaring 100 bytes and sending megabytes yields at most the 100 declared bytes."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
    server.routes["/long"] = lambda r: r.wfile.write(head + b"b" * 3_000_000)
    assert len(fetcher.fetch("t", server.url("/long")).body) == 100


@row("H6")
def test_h6_endless_chunked_body_stops(server: FeedServer, fetcher: Fetcher) -> None:
    """H6: a chunked body that never ends stops at the cap (or the deadline)."""

    def chunked(request: Request) -> None:
        request.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100_000):
            request.wfile.write(b"10000\r\n" + b"\0" * 0x10000 + b"\r\n")

    server.routes["/chunked"] = chunked
    assert reason(fetcher, server.url("/chunked")) in ("body_too_large", "deadline_exceeded")


def gzip_response(request: Request, body: bytes, encoding: str = "gzip") -> None:
    request.send(200, body, {"Content-Encoding": encoding})


def test_gzip_body_is_decoded(server: FeedServer, fetcher: Fetcher) -> None:
    """An ordinary gzip body is inflated by our own decoder."""
    server.routes["/gz"] = lambda r: gzip_response(r, gzip.compress(b"<rss>hello</rss>"))
    assert fetcher.fetch("t", server.url("/gz")).body == b"<rss>hello</rss>"


def test_deflate_raw_and_wrapped_are_decoded(server: FeedServer, fetcher: Fetcher) -> None:
    """Deflate is accepted both zlib-wrapped (RFC 9110) and raw (what some servers send)."""
    raw = zlib.compressobj(wbits=-15)
    raw_body = raw.compress(b"<rss>raw</rss>") + raw.flush()
    server.routes["/z"] = lambda r: gzip_response(r, zlib.compress(b"<rss>z</rss>"), "deflate")
    server.routes["/raw"] = lambda r: gzip_response(r, raw_body, "deflate")
    assert fetcher.fetch("t", server.url("/z")).body == b"<rss>z</rss>"
    assert fetcher.fetch("t", server.url("/raw")).body == b"<rss>raw</rss>"


@row("H7")
def test_h7_gzip_bomb_stops_at_decoded_cap(server: FeedServer, fetcher: Fetcher) -> None:
    """H7: 64 MiB of zeros in 64 KiB of gzip is refused at the 1 MiB decoded cap."""
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    server.routes["/gzip-bomb"] = lambda r: gzip_response(r, bomb)
    assert reason(fetcher, server.url("/gzip-bomb")) == "body_too_large"


@row("H7")
def test_h7_decoder_hands_over_one_step_at_a_time() -> None:
    """H7: a bomb is decoded in pieces of at most DECODE_STEP and stops one byte past the
    room, so the body never holds much more than the cap (peak RSS < 2 x the cap)."""
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    pieces = list(_decoder("t", "gzip").feed(bomb, 1 << 20))
    assert max(map(len, pieces)) <= DECODE_STEP
    assert sum(map(len, pieces)) == (1 << 20) + 1


def test_gzip_body_of_many_steps_is_decoded_whole(server: FeedServer, fetcher: Fetcher) -> None:
    """A gzip body that decodes to many DECODE_STEPs comes back byte for byte."""
    text = b"".join(b"<item>%d</item>" % n for n in range(50_000))  # about 750 KB
    server.routes["/gz"] = lambda r: gzip_response(r, gzip.compress(text))
    assert fetcher.fetch("t", server.url("/gz")).body == text


@row("H8")
def test_h8_stacked_encoding_is_refused(server: FeedServer, fetcher: Fetcher) -> None:
    """H8: `gzip, gzip` is refused before any decoding."""
    body = gzip.compress(gzip.compress(b"\0" * 1000))
    server.routes["/gzip-gzip"] = lambda r: gzip_response(r, body, "gzip, gzip")
    assert reason(fetcher, server.url("/gzip-gzip")) == "stacked_encoding"


@row("H9")
@pytest.mark.parametrize("encoding", ["br", "zstd", "x-unknown"])
def test_h9_unadvertised_encoding_is_refused(
    server: FeedServer, fetcher: Fetcher, encoding: str
) -> None:
    """H9: encodings we did not advertise are refused, no decoder runs."""
    server.routes["/enc"] = lambda r: gzip_response(r, b"\x0b\x02\x80hello", encoding)
    assert reason(fetcher, server.url("/enc")) == "unsupported_encoding"


@row("H10")
@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_h10_bad_gzip_is_a_decode_error(server: FeedServer, fetcher: Fetcher, cut: str) -> None:
    """H10: a truncated or corrupt gzip stream is `decode_error`."""
    whole = gzip.compress(b"<rss>" + b"news " * 5000 + b"</rss>")
    body = whole[: len(whole) // 2] if cut == "truncated" else whole[:20] + b"garbage" * 50
    server.routes["/bad"] = lambda r: gzip_response(r, body)
    assert reason(fetcher, server.url("/bad")) == "decode_error"


@row("H11")
def test_h11_redirect_loop_stops(server: FeedServer, fetcher: Fetcher) -> None:
    """H11: A -> B -> A stops after 5 redirects."""
    server.routes["/a"] = lambda r: r.send(302, b"", {"Location": "/b"})
    server.routes["/b"] = lambda r: r.send(302, b"", {"Location": "/a"})
    assert reason(fetcher, server.url("/a")) == "too_many_redirects"
    assert server.counts["/a"] + server.counts["/b"] == 6  # the first request and 5 hops


@row("H12")
def test_h12_long_redirect_chain_stops_after_five(server: FeedServer, fetcher: Fetcher) -> None:
    """H12: of 30 distinct hops only 5 are followed; a chain of 5 still works."""
    for n in range(30):
        server.routes[f"/hop/{n}"] = lambda r, n=n: r.send(302, b"", {"Location": f"/hop/{n + 1}"})
    server.routes["/hop/30"] = lambda r: r.send(200, b"end")
    assert reason(fetcher, server.url("/hop/0")) == "too_many_redirects"
    assert sum(server.counts.values()) == 6
    assert fetcher.fetch("t", server.url("/hop/25")).body == b"end"


@row("H13")
@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://x/", "gopher://x/", "data:,hi", "data:text/html,<b>x</b>",
     "javascript:alert(1)"],
)  # fmt: skip
def test_h13_redirect_to_other_schemes_is_refused(
    server: FeedServer, fetcher: Fetcher, target: str
) -> None:
    """H13: a redirect to file:, ftp:, gopher:, data: or javascript: is scheme_not_allowed
    (data: and javascript: too, which httpx's own Location parsing rejects otherwise)."""
    server.routes["/go"] = lambda r: r.send(302, b"", {"Location": target})
    assert reason(fetcher, server.url("/go")) == "scheme_not_allowed"


def test_unparseable_redirect_is_a_feed_error(server: FeedServer, fetcher: Fetcher) -> None:
    """A Location that is no URL at all is a feed error (httpx refuses it), not a crash."""
    server.routes["/go"] = lambda r: r.send(302, b"", {"Location": "http://[::1/x"})
    assert reason(fetcher, server.url("/go")) in ("bad_url", "protocol_error")


@row("H14")
def test_h14_loopback_is_refused_by_default(server: FeedServer) -> None:
    """H14: with the default policy a loopback feed is refused before any connect."""
    server.routes["/ok"] = lambda r: r.send(200, b"<rss/>")
    strict = Fetcher(LIMITS)
    try:
        assert reason(strict, server.url("/ok")) == "private_address"
    finally:
        strict.close()
    assert server.counts["/ok"] == 0


@row("H14")
def test_h14_redirect_to_metadata_address_is_refused(server: FeedServer) -> None:
    """H14: a feed redirecting to a name that resolves to 169.254.169.254 is refused."""
    server.routes["/go"] = lambda r: r.send(302, b"", {"Location": "http://meta.test/latest/"})
    names = {"public.test": ["127.0.0.1"], "meta.test": ["169.254.169.254"]}
    # public.test is our loopback server playing a public host: the operator allow-list
    # admits exactly that address, so only the redirect target is judged.
    guarded = Fetcher(
        LIMITS, resolve=lambda host, port: names[host], allowed_networks=("127.0.0.1/32",)
    )
    try:
        assert reason(guarded, f"http://public.test:{server.port}/go") == "private_address"
    finally:
        guarded.close()
    assert server.counts["/go"] == 1


@row("H15")
def test_h15_connect_goes_to_the_checked_address(server: FeedServer) -> None:
    """H15: the name is resolved once per hop and the connect is pinned to that answer."""
    server.routes["/ok"] = lambda r: r.send(200, b"<rss/>")
    answers = [["127.0.0.1"]]
    calls = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[0] if len(calls) == 1 else ["10.0.0.1"]

    pinned = Fetcher(LIMITS, allow_private=True, resolve=rebinding)
    try:
        assert pinned.fetch("t", f"http://rebind.test:{server.port}/ok").body == b"<rss/>"
    finally:
        pinned.close()
    assert calls == ["rebind.test"]
    assert server.seen[0].headers["host"] == f"rebind.test:{server.port}"


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "::1", "::ffff:127.0.0.1",
     "0.0.0.0", "224.0.0.1", "fd00::1"],
)  # fmt: skip
def test_forbidden_addresses(ip: str) -> None:
    """Private, loopback, link-local, CGNAT, IPv4-mapped, unspecified and multicast are refused."""
    assert is_forbidden_address(ip)


def test_public_address_is_allowed() -> None:
    """A public unicast address passes the guard."""
    assert not is_forbidden_address("93.184.216.34")


@row("H15")
def test_a_mixed_dns_answer_is_refused(server: FeedServer) -> None:
    """Any private address among the answers refuses the host."""
    mixed = Fetcher(LIMITS, resolve=lambda host, port: ["93.184.216.34", "10.0.0.1"])
    try:
        assert reason(mixed, "http://mixed.test/feed") == "private_address"
    finally:
        mixed.close()


@row("H22")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_h22_self_signed_tls_is_a_tls_error(tmp_path: Path, fetcher: Fetcher) -> None:
    """H22: a self-signed certificate fails with tls_error; no insecure retry."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
         cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert reason(fetcher, f"https://127.0.0.1:{port}/") == "tls_error"
    finally:
        listener.close()


@row("H23")
@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"X-Big": "a" * 200_000}, "protocol_error"),  # h11 gives up while the head is incomplete
     ({f"X-{n}": "v" for n in range(20_000)}, "protocol_error"),
     ({"X-Big": "a" * 100_000}, "headers_too_large"),  # arrives whole: our own bound
     ({f"X-{n}": "v" for n in range(10_000)}, "headers_too_large"),
     ({f"{n}": "" for n in range(1_001)}, "headers_too_large")],
)  # fmt: skip
def test_h23_huge_response_headers_are_refused(
    server: FeedServer, fetcher: Fetcher, headers: dict[str, str], expected: str
) -> None:
    """H23: a 100-200 KB header, or 1,001-20,000 headers, is refused: by h11 while the head is
    incomplete, else by our 64 KiB / 1,000-header bound."""
    server.routes["/big"] = lambda r: r.send(200, b"x", headers)
    assert reason(fetcher, server.url("/big")) == expected


def test_ordinary_headers_pass(server: FeedServer, fetcher: Fetcher) -> None:
    """A head of 60 headers and a 16 KiB cookie (a busy CDN) is well inside the bound."""
    headers = {**{f"X-Cdn-{n}": "v" * 20 for n in range(60)}, "Set-Cookie": "c=" + "x" * 16_384}
    server.routes["/cdn"] = lambda r: r.send(200, b"<rss/>", headers)
    assert fetcher.fetch("t", server.url("/cdn")).body == b"<rss/>"


@row("H19")
def test_error_status_carries_retry_after(server: FeedServer, fetcher: Fetcher) -> None:
    """A 429 is an error that carries its status and raw Retry-After for the scheduler."""
    server.routes["/429"] = lambda r: r.send(429, b"", {"Retry-After": "3600"})
    with pytest.raises(FetchError) as info:
        fetcher.fetch("t", server.url("/429"))
    assert (info.value.reason, info.value.status_code, info.value.retry_after) == (
        "http_429", 429, "3600",
    )  # fmt: skip


def test_a_304_leaves_its_connection_open_for_the_next_fetch(fetcher: Fetcher) -> None:
    """The empty body of a 304 is read, so the next poll reuses the kept-alive connection."""
    import http.server

    peers: list[int] = []

    class KeepAlive(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            peers.append(self.client_address[1])
            self.send_response(304 if self.headers.get("If-None-Match") else 200)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/feed"
    try:
        assert fetcher.fetch("t", url).status_code == 200
        for _ in range(3):
            assert fetcher.fetch("t", url, etag='"v1"').status_code == 304
    finally:
        server.shutdown()
        server.server_close()
    assert len(set(peers)) == 1  # one TCP connection for all four requests
