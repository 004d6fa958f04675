"""RELIABILITY.md 3(a), HTTP rows H1-H23, through the real pipeline.

Each hostile response is served on loopback to one feed of a real pipeline
(tests/reliability/hostile.py) beside a healthy neighbour: the row's reason
must be that feed's error, logged once on one line, with the backoff of G5,
and the neighbour must still store its item and alert. The heavy rows (H4,
H6-H8) run in a forked child under RLIMIT_AS (tests/reliability/sandbox.py)
and record its peak RSS. The same rows are checked at the fetcher's level in
tests/test_fetch.py, which carries the same case ids.

Deadlines are the short ones of hostile.FETCH: 3 s total, 1 s connect and
read, 2 s parse.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from feedserver import FeedServer, Request, Route, item, rss
from hostile import (
    INTERVAL_S,
    FeedPair,
    assert_feed_error,
    assert_neighbour_unharmed,
    poll_isolated,
    poll_once,
    record_poll,
    record_sentinel_check,
)
from hostile_routes import (
    MIB,
    encoded,
    endless_chunks,
    endless_zeros,
    gzip_bomb,
    gzip_gzip_bomb,
    lying_length,
    redirect,
    silent,
    trickle,
)
from hostile_rows import row, row_param

import conftest
from casebook import measured

pytestmark = pytest.mark.reliability

DEADLINE_S, READ_S, CONNECT_S = 3.0, 1.0, 1.0
CAP = 10 * MIB  # fetch.max_bytes, the default
MARGIN_S = 2.0  # generous: a loaded CI machine, never a speed assertion


# --- deadlines and timeouts ----------------------------------------------------------------


@row("H1")
def test_h1_slow_loris_body_is_cut_at_the_total_deadline(
    tmp_path: Path, server: FeedServer
) -> None:
    """H1: a body trickled 1 byte / 0.5 s is a deadline_exceeded feed error at the 3 s deadline."""
    server.routes["/slow-body"] = trickle(server)
    poll = poll_once(tmp_path, server, server.url("/slow-body"))
    assert_feed_error(poll, "deadline_exceeded")
    assert DEADLINE_S - 0.1 <= poll.hostile.wall_s <= DEADLINE_S + MARGIN_S
    assert poll.hostile.bytes_read < 1024  # headers and a few trickled bytes
    record_poll(poll, deadline_s=DEADLINE_S, byte_cap=CAP)


@row("H2")
def test_h2_silent_server_is_a_read_timeout(tmp_path: Path, server: FeedServer) -> None:
    """H2: a server that accepts and never answers is a read_timeout feed error at 1 s."""
    server.routes["/slow-headers"] = silent(server)
    poll = poll_once(tmp_path, server, server.url("/slow-headers"))
    assert_feed_error(poll, "read_timeout")
    assert poll.hostile.wall_s <= READ_S + MARGIN_S
    record_poll(poll, deadline_s=READ_S)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # takes the one queue slot
    yield port
    filler.close()
    listener.close()


@row("H3")
def test_h3_full_backlog_is_a_connect_timeout(
    tmp_path: Path, server: FeedServer, full_backlog: int
) -> None:
    """H3: a listener that never accepts (full backlog) is a connect_timeout feed error at 1 s."""
    poll = poll_once(tmp_path, server, f"http://127.0.0.1:{full_backlog}/feed")
    assert_feed_error(poll, "connect_timeout")
    assert poll.hostile.wall_s <= CONNECT_S + MARGIN_S
    record_poll(poll, deadline_s=CONNECT_S)


@row("H3")
def test_h3_closed_port_is_connection_refused(tmp_path: Path, server: FeedServer) -> None:
    """H3: a closed port is an immediate connection_refused feed error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    poll = poll_once(tmp_path, server, f"http://127.0.0.1:{port}/feed")
    assert_feed_error(poll, "connection_refused")
    assert poll.hostile.wall_s <= CONNECT_S


# --- sizes and encodings (in a sandbox: these are the rows that could eat the machine) -------


@row("H4")
def test_h4_endless_body_stops_at_the_cap(tmp_path: Path, server: FeedServer) -> None:
    """H4: Content-Length 2 GiB of zeros is body_too_large after the 10 MiB cap and one read,
    with the process growing by less than 64 MiB."""
    server.routes["/huge"] = endless_zeros
    poll, figures = poll_isolated(tmp_path, server, server.url("/huge"))
    assert_feed_error(poll, "body_too_large")
    assert CAP < poll.hostile.bytes_read <= CAP + MIB  # one read past the cap, no more
    assert figures.rss_growth_mib < 64 and figures.py_heap_peak_mib < 64
    record_poll(poll, figures, byte_cap=CAP, rss_cap_mib=64, deadline_s=DEADLINE_S)
    measured(rss_measure="the polling process's RSS growth during the poll")


@row("H6")
def test_h6_endless_chunked_body_stops(tmp_path: Path, server: FeedServer) -> None:
    """H6: a never-ending chunked body stops at the cap (or the deadline), growing < 64 MiB."""
    server.routes["/chunked"] = endless_chunks
    poll, figures = poll_isolated(tmp_path, server, server.url("/chunked"))
    assert_feed_error(poll, ("body_too_large", "deadline_exceeded"))
    assert poll.hostile.bytes_read <= CAP + MIB
    assert poll.hostile.wall_s <= DEADLINE_S + MARGIN_S
    assert figures.rss_growth_mib < 64 and figures.py_heap_peak_mib < 64
    record_poll(poll, figures, byte_cap=CAP, rss_cap_mib=64, deadline_s=DEADLINE_S)
    measured(rss_measure="the polling process's RSS growth during the poll")


@row("H7")
def test_h7_gzip_bomb_stops_at_the_decoded_cap(tmp_path: Path, server: FeedServer) -> None:
    """H7: 1 GiB of zeros in 1.04 MB of gzip is body_too_large at the 10 MiB decoded cap, read
    from a small part of the wire, holding less than 2 x the cap at its peak."""
    bomb = gzip_bomb()
    server.routes["/gzip-bomb"] = encoded(bomb, "gzip")
    poll, figures = poll_isolated(tmp_path, server, server.url("/gzip-bomb"))
    assert_feed_error(poll, "body_too_large")
    assert "decoded" in (poll.hostile.error or "")
    assert poll.hostile.bytes_read < len(bomb) // 2  # stopped long before the wire ran out
    # Python's heap peak counts every buffer (RSS growth may hide reused pages): the body
    # (<= cap + 1) and one decoded step, not a second cap-sized copy (2.6 x before the fix).
    assert figures.py_heap_peak_mib < 2 * CAP / MIB, figures
    record_poll(poll, figures, figures.py_heap_peak_mib, byte_cap=CAP,
                rss_cap_mib=2 * CAP // MIB, deadline_s=DEADLINE_S)  # fmt: skip
    measured(wire_bytes=len(bomb), rss_measure="peak of Python allocations during the poll")


@row("H8")
def test_h8_stacked_gzip_is_refused_before_decoding(tmp_path: Path, server: FeedServer) -> None:
    """H8: the 1,827-byte 'gzip, gzip' bomb is stacked_encoding with nothing decoded."""
    bomb = gzip_gzip_bomb()
    server.routes["/gzip-gzip"] = encoded(bomb, "gzip, gzip")
    poll, figures = poll_isolated(tmp_path, server, server.url("/gzip-gzip"))
    assert_feed_error(poll, "stacked_encoding")
    assert poll.hostile.bytes_read < 64 * 1024
    assert figures.py_heap_peak_mib < 8, f"{figures.py_heap_peak_mib} MiB: something was decoded"
    record_poll(poll, figures, figures.py_heap_peak_mib, byte_cap=CAP, rss_cap_mib=8,
                deadline_s=DEADLINE_S)  # fmt: skip
    measured(wire_bytes=len(bomb), rss_measure="peak of Python allocations during the poll")


# --- one response, one reason ----------------------------------------------------------------


def _truncated_gzip() -> bytes:
    import gzip

    whole = gzip.compress(rss([item(n) for n in range(200)]))
    return whole[: len(whole) // 2]


def _corrupt_gzip() -> bytes:
    import gzip

    return gzip.compress(rss([item(1)]))[:20] + b"garbage" * 50


CHALLENGE_PAGE = (b"<html><head><title>Just a moment...</title></head>"
                  b"<body>Checking your browser</body></html>")  # fmt: skip
SIZE_LIMIT = ("protocol_error", "headers_too_large")  # h11's, or our own bound
ROWS = [
    row_param("H5", lambda s: lying_length(10_000_000, b"<rss>" + b"a" * 95),
              "protocol_error", id="H5-short-body"),
    row_param("H5", lambda s: lying_length(150, rss([item(n) for n in range(30_000)])),
              "truncated_feed", id="H5-long-body"),
    *(row_param("H9", lambda s, e=e: encoded(b"\x0b\x02\x80hello", e),
                "unsupported_encoding", id=f"H9-{e}") for e in ("br", "zstd", "x-unknown")),
    row_param("H10", lambda s: encoded(_truncated_gzip(), "gzip"), "decode_error",
              id="H10-truncated"),
    row_param("H10", lambda s: encoded(_corrupt_gzip(), "gzip"), "decode_error",
              id="H10-corrupt"),
    row_param("H16", lambda s: lambda r: r.send(200, CHALLENGE_PAGE, {"Content-Type": "text/html"}),
              "not_a_feed"),
    row_param("H17", lambda s: lambda r: r.send(200, b""), "empty_body"),
    row_param("H21", lambda s: lambda r: r.send(404, b"not here"), "http_404", id="H21-404"),
    row_param("H23", lambda s: lambda r: r.send(200, b"x", {"X-Big": "a" * 100 * 1024}),
              SIZE_LIMIT, id="H23-100KiB-header"),
    row_param("H23", lambda s: lambda r: r.send(200, b"x", {f"X-{n}": "v" for n in range(10_000)}),
              SIZE_LIMIT, id="H23-10000-headers"),
]  # fmt: skip


@pytest.mark.parametrize(("make_route", "reason"), ROWS)
def test_hostile_response_is_that_feeds_error(
    tmp_path: Path, server: FeedServer, make_route: Callable[[FeedServer], Route],
    reason: str | tuple[str, ...],
) -> None:  # fmt: skip
    """Each hostile response is the hostile feed's error with its stable reason, logged once
    on one line; nothing of it is stored; the healthy neighbour alerts as usual."""
    server.routes["/hostile"] = make_route(server)
    poll = poll_once(tmp_path, server, server.url("/hostile"))
    assert_feed_error(poll, reason)
    assert poll.stored["articles"].get("hostile", 0) == 0  # no partial parse
    assert poll.hostile.wall_s <= DEADLINE_S + MARGIN_S
    record_poll(poll, deadline_s=DEADLINE_S, byte_cap=CAP)


# --- redirects and where they may lead -------------------------------------------------------


@row("H11")
def test_h11_redirect_loop_stops_after_five_hops(tmp_path: Path, server: FeedServer) -> None:
    """H11: A -> B -> A ... is too_many_redirects after the first request and 5 hops."""
    server.routes["/a"] = redirect("/b")
    server.routes["/b"] = redirect("/a")
    poll = poll_once(tmp_path, server, server.url("/a"))
    assert_feed_error(poll, "too_many_redirects")
    assert server.counts["/a"] + server.counts["/b"] == 6
    record_poll(poll, deadline_s=DEADLINE_S)


@row("H12")
def test_h12_long_redirect_chain_stops_after_five(tmp_path: Path, server: FeedServer) -> None:
    """H12: of a chain of 30 distinct redirects only 5 are followed."""
    for n in range(30):
        server.routes[f"/hop/{n}"] = redirect(f"/hop/{n + 1}")
    poll = poll_once(tmp_path, server, server.url("/hop/0"))
    assert_feed_error(poll, "too_many_redirects")
    assert sum(n for path, n in server.counts.items() if path.startswith("/hop/")) == 6
    record_poll(poll, deadline_s=DEADLINE_S)


@pytest.mark.parametrize("scheme", ["file", "ftp", "gopher", "data"])
@row("H13")
def test_h13_redirect_to_another_scheme_is_refused(
    tmp_path: Path, server: FeedServer, scheme: str
) -> None:
    """H13: a redirect to file:, ftp:, gopher: or data: is scheme_not_allowed; a sentinel file
    it names never reaches the database, an alert or a log line."""
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("SENTINEL-H13-5d1e")
    targets = {"file": f"file://{sentinel}", "ftp": f"ftp://127.0.0.1/{sentinel}",
               "gopher": "gopher://127.0.0.1/1", "data": "data:text/html,<b>x</b>"}  # fmt: skip
    server.routes["/go"] = redirect(targets[scheme])
    poll = poll_once(tmp_path, server, server.url("/go"))
    assert_feed_error(poll, "scheme_not_allowed")
    leaks = sum("SENTINEL-H13" in text for text in (poll.stored["text"], poll.alerts, *poll.logs))
    record_sentinel_check(leaks)
    assert leaks == 0


@row("H14")
def test_h14_loopback_feed_is_refused_by_default(tmp_path: Path, server: FeedServer) -> None:
    """H14: with the default deny-private policy a loopback feed is private_address and the
    server never sees a request for it."""
    server.routes["/inside"] = lambda r: r.send(200, rss([item(1)]))
    poll = poll_once(tmp_path, server, server.url("/inside"), hostile_allow_private=False)
    assert_feed_error(poll, "private_address")
    assert server.counts["/inside"] == 0


@row("H14")
def test_h14_metadata_name_is_refused_before_connect(tmp_path: Path, server: FeedServer) -> None:
    """H14: a feed on meta.test, which the stub resolver maps to 169.254.169.254, is
    private_address with no connect attempted (the network guard saw none)."""
    refused_before = len(conftest.forbidden_connects)

    def resolve(host: str, port: int) -> list[str]:
        return {"meta.test": ["169.254.169.254"]}.get(host) or ["127.0.0.1"]

    poll = poll_once(tmp_path, server, "http://meta.test/latest/meta-data/", resolve=resolve,
                     hostile_allow_private=False)  # fmt: skip
    assert_feed_error(poll, "private_address")
    assert "169.254.169.254" in (poll.hostile.error or "")
    assert len(conftest.forbidden_connects) == refused_before


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture
def self_signed_tls(tmp_path: Path) -> Iterator[tuple[int, list[int]]]:
    """A TLS listener with a self-signed certificate; yields its port and a handshake count."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
         cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    handshakes: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            handshakes.append(1)
            try:
                context.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], handshakes
    listener.close()


@row("H22")
def test_h22_self_signed_certificate_is_a_tls_error(
    tmp_path: Path, server: FeedServer, self_signed_tls: tuple[int, list[int]]
) -> None:
    """H22: a self-signed certificate is a tls_error feed error after exactly one handshake."""
    port, handshakes = self_signed_tls
    poll = poll_once(tmp_path, server, f"https://127.0.0.1:{port}/feed")
    assert_feed_error(poll, "tls_error")
    assert len(handshakes) == 1  # no second, insecure attempt
    record_poll(poll, deadline_s=DEADLINE_S)


# --- schedule rows: 304, Retry-After, backoff, gone -----------------------------------------


@row("H18")
def test_h18_not_modified_parses_nothing_and_resets_the_counter(
    tmp_path: Path, server: FeedServer
) -> None:
    """H18: after a 200 with an ETag and a 503, a 304 to our If-None-Match parses nothing,
    resets the error counter and schedules the next check one interval on."""
    answers = iter(["200", "503", "304"])

    def etag(request: Request) -> None:
        answer = next(answers)
        if answer == "200":
            request.send(200, rss([item(1, title="Zanzibar first")]), {"ETag": '"v1"'})
        elif answer == "503":
            request.send(503, b"busy")
        else:
            assert request.headers.get("if-none-match") == '"v1"'
            request.send(304, b"", {"ETag": '"v1"'})

    server.routes["/etag"] = etag
    pair = FeedPair(tmp_path, server, server.url("/etag"))
    try:
        assert pair.poll().hostile.new == 1
        pair.advance_to_next_poll()
        assert pair.poll(due_only=True).hostile.errors == 1
        pair.advance_to_next_poll()
        parses: list[str] = []
        parser = pair.pipeline.reader().parser
        real_parse = parser.parse
        parser.parse = lambda source, *a: parses.append(source) or real_parse(source, *a)  # type: ignore[method-assign]
        poll = pair.poll(due_only=True)
    finally:
        pair.close()
    assert (poll.hostile.error, poll.hostile.errors, poll.hostile.new) == (None, 0, 0)
    assert "hostile" not in parses
    assert poll.hostile.next_in_s == INTERVAL_S
    assert not [line for line in poll.logs if "source=hostile" in line and "WARNING" in line]


@pytest.mark.parametrize("value", ["3600", "http-date", "99999999", "banana"])
@row("H19")
def test_h19_retry_after_is_honoured_and_clamped(
    tmp_path: Path, server: FeedServer, value: str
) -> None:
    """H19: a 429's Retry-After puts the next poll at least that far (an HTTP-date too), clamped
    to 24 h; a value that is neither is ignored for the normal backoff."""
    pair = FeedPair(tmp_path, server, server.url("/busy"))
    in_two_hours = format_datetime(pair.clock.now + timedelta(hours=2), usegmt=True)
    header = in_two_hours if value == "http-date" else value
    server.routes["/busy"] = lambda r: r.send(429, b"", {"Retry-After": header})
    try:
        poll = pair.poll()
    finally:
        pair.close()
    assert poll.hostile.reason == "http_429" and poll.hostile.errors == 1
    expected = {
        "3600": (3600, 3600 * 1.2), "http-date": (7199, 7201), "99999999": (86400, 86400),
        "banana": (INTERVAL_S * 0.8, INTERVAL_S * 1.2),  # garbage: the normal backoff
    }  # fmt: skip
    low, high = expected[value]
    assert low <= poll.hostile.next_in_s <= high, poll.hostile.next_in_s
    assert_neighbour_unharmed(poll)


@row("H20")
def test_h20_fifty_server_errors_back_off_then_recover(tmp_path: Path, server: FeedServer) -> None:
    """H20: 50 polls of 500/502/503 double the wait (±20 %) up to 24 h, mark the feed failing
    from the third, never disable it; the first 200 stores the item and resets the counter."""
    statuses = iter([500, 502, 503] * 17)
    state = {"ok": False}

    def flaky(request: Request) -> None:
        if state["ok"]:
            request.send(200, rss([item(1, title="Zanzibar recovered")]))
        else:
            request.send(next(statuses), b"down")

    server.routes["/flaky"] = flaky
    pair = FeedPair(tmp_path, server, server.url("/flaky"))
    waits = []
    try:
        for n in range(1, 51):
            poll = pair.poll(due_only=n > 1, deliver=False)
            expected = min(INTERVAL_S * 2 ** (n - 1), 86400)
            assert expected * 0.8 <= poll.hostile.next_in_s <= min(expected * 1.2, 86400)
            assert poll.hostile.errors == n
            assert poll.hostile.status == ("failing" if n >= 3 else "ok")
            waits.append(poll.hostile.next_in_s)
            pair.advance_to_next_poll()  # still due again: never disabled
        state["ok"] = True
        poll = pair.poll(due_only=True)
    finally:
        pair.close()
    assert (poll.hostile.new, poll.hostile.hits, poll.hostile.errors) == (1, 1, 0)
    assert poll.hostile.status == "ok"
    measured(polls=51, first_wait_s=round(waits[0]), max_wait_h=round(max(waits) / 3600, 2))


@row("H21")
def test_h21_gone_feed_is_flagged_and_polled_slowly(tmp_path: Path, server: FeedServer) -> None:
    """H21: a 410 is a feed error flagged `gone` and retried about a day later, and again
    after that: never disabled."""
    server.routes["/gone"] = lambda r: r.send(410, b"gone")
    pair = FeedPair(tmp_path, server, server.url("/gone"))
    try:
        first = pair.poll()
        pair.advance_to_next_poll()
        second = pair.poll(due_only=True)
    finally:
        pair.close()
    for poll in (first, second):
        assert poll.hostile.reason == "http_410" and poll.hostile.status == "gone"
        assert 86400 * 0.8 <= poll.hostile.next_in_s <= 86400
    assert server.counts["/gone"] == 2
    assert_neighbour_unharmed(first)


@row("H15")
def test_h15_rebinding_cannot_move_the_connect(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H15: a name that answers 203.0.113.10 first and 10.0.0.1 afterwards is resolved once
    and connected to at 203.0.113.10 only; a private first answer is refused, 0 connects."""
    from monitor.sources.fetch import Fetcher, FetchLimits

    server.routes["/feed"] = lambda r: r.send(200, rss([item(1)]))
    lookups: list[str] = []
    connects: list[tuple[str, int]] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["203.0.113.10"] if len(lookups) == 1 else ["10.0.0.1"]

    guarded = socket.socket.connect

    def nat(self: socket.socket, address: tuple[str, int]) -> None:
        # 203.0.113.10 stands for a public host: record the connect, then serve it on loopback.
        connects.append(address[:2])
        if address[0] == "203.0.113.10":
            address = ("127.0.0.1", address[1])
        return guarded(self, address)

    monkeypatch.setattr(socket.socket, "connect", nat)
    limits = FetchLimits(timeout=DEADLINE_S, connect=CONNECT_S, read=READ_S)
    # 203.0.113.0/24 is a documentation range, so private to ipaddress: the operator
    # allow-list admits it, as it would a real public address.
    fetcher = Fetcher(limits, resolve=rebinding, allowed_networks=("203.0.113.0/24",))
    try:
        body = fetcher.fetch("t", f"http://rebind.test:{server.port}/feed").body
        assert b"urn:item:1" in body
        assert lookups == ["rebind.test"] and connects == [("203.0.113.10", server.port)]
        lookups.append("again")  # the next lookup answers 10.0.0.1: refused, nothing connects
        with pytest.raises(Exception) as info:
            fetcher.fetch("t", f"http://rebind.test:{server.port}/feed")
        assert getattr(info.value, "reason", None) == "private_address"
        assert connects == [("203.0.113.10", server.port)]
    finally:
        fetcher.close()
