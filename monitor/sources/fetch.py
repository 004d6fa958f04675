"""Fetch one feed URL within bounds (G1) and only from allowed addresses (G2).

One shared ``httpx.AsyncClient`` runs on one event-loop thread owned by the
``Fetcher``; callers on any thread call ``fetch()`` and block on their own
request only, so many feeds are fetched at once under a global and a per-host
limit, and one slow feed never holds up another.

Why we do by hand what httpx could do for us:

- **Total deadline** (``asyncio.timeout``): httpx's read timeout restarts on
  every byte, so a server trickling one byte every 0.5 s is never stopped by
  it (encode/httpx#1450).
- **Decoding** over ``aiter_raw()`` with ``decompressobj().decompress(chunk,
  max_length)``: httpx inflates ``Content-Encoding: gzip, gzip`` to 1 GiB in a
  single chunk (RELIABILITY.md, pydantic/httpx2#1126). We advertise gzip only
  and refuse stacked or unknown encodings.
- **Redirects**: followed one hop at a time (at most 5) so that every hop is
  checked for its scheme and resolved address.
- **SSRF**: the host is resolved once per hop, every answer is checked, and
  the connection goes to the checked IP with Host and SNI kept (httpcore's
  ``sni_hostname`` extension), so a DNS answer that changes between our check
  and httpx's connect (rebinding) cannot reach a private address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from monitor import __version__
from monitor.errors import FetchError
from monitor.netguard import is_forbidden_address

USER_AGENT = f"monitor/{__version__} (news monitor; +https://github.com/monitor/monitor)"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# h11 (through httpcore) refuses a response head over 100 KiB only while it is incomplete,
# so a head that arrives in two 64 KiB reads passes whole: a 100 KiB header or 10,000
# headers came through (RELIABILITY H23). Feeds send a few KiB; these bounds are ours.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 1000

# (host, port) -> the IP addresses it resolves to. A seam: tests pass a stub.
Resolver = Callable[[str, int], list[str]]


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise OSError(f"cannot resolve {host!r}: {e}") from e
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchLimits:
    """Bounds for every fetch (G1); seconds and bytes."""

    timeout: float = 30.0  # total deadline, redirects included
    connect: float = 10.0
    read: float = 10.0
    max_bytes: int = 10 * 1024 * 1024  # decoded body
    max_redirects: int = 5
    concurrency: int = 20  # fetches in flight at once
    per_host: int = 2  # fetches in flight per host, to be polite


@dataclass(frozen=True)
class FetchResult:
    """A response we accept: 200 with its body, or 304 (``not_modified``, no body)."""

    url: str
    status_code: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


class Fetcher:
    """The one HTTP client for feeds. ``fetch()`` is thread-safe and blocking."""

    def __init__(
        self,
        limits: FetchLimits | None = None,
        *,
        allow_private: bool = False,
        resolve: Resolver = system_resolve,
        verify: ssl.SSLContext | bool = True,
        allowed_networks: tuple[str, ...] = (),
    ):
        self.limits = limits or FetchLimits()
        self.allow_private = allow_private
        # The operator's allow-list (G2): intranet ranges admitted without opening them all.
        self.allowed_networks = tuple(ipaddress.ip_network(n) for n in allowed_networks)
        self.resolve = resolve
        self._verify = verify
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fetch", daemon=True)
        self._thread.start()
        self._client: httpx.AsyncClient = asyncio.run_coroutine_threadsafe(
            self._open_client(), self._loop
        ).result()
        self._all = asyncio.Semaphore(self.limits.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def _open_client(self) -> httpx.AsyncClient:
        lim = self.limits
        return httpx.AsyncClient(
            timeout=httpx.Timeout(lim.read, connect=lim.connect, pool=lim.timeout),
            limits=httpx.Limits(max_connections=lim.concurrency, max_keepalive_connections=20),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"},
            follow_redirects=False,
            trust_env=False,  # an environment proxy would bypass the address check
            verify=self._verify,
            event_hooks={"response": [_refuse_other_schemes]},
        )

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def fetch(
        self,
        source: str,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        allow_private: bool | None = None,
    ) -> FetchResult:
        """GET ``url`` (conditionally when validators are given); raise ``FetchError``."""
        allowed = self.allow_private if allow_private is None else allow_private
        coro = self.fetch_async(source, url, etag, last_modified, allowed)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def fetch_async(
        self, source: str, url: str, etag: str | None, last_modified: str | None, allowed: bool
    ) -> FetchResult:
        host = (urlsplit(url).hostname or "").lower()
        semaphore = self._hosts.setdefault(host, asyncio.Semaphore(self.limits.per_host))
        async with self._all, semaphore:
            try:
                async with asyncio.timeout(self.limits.timeout):
                    return await self._follow(source, url, etag, last_modified, allowed)
            except TimeoutError as e:
                raise FetchError(source, "deadline_exceeded", f"{self.limits.timeout:g}s") from e
            except httpx.HTTPError as e:
                raise _translate(source, e) from e
            except httpx.InvalidURL as e:  # e.g. a redirect to "data:,..."
                raise FetchError(source, "bad_url", str(e)[:200]) from e

    async def _follow(
        self, source: str, url: str, etag: str | None, last_modified: str | None, allowed: bool
    ) -> FetchResult:
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for _hop in range(self.limits.max_redirects + 1):
            request = await self._pinned_request(source, url, headers, allowed)
            try:
                response = await self._client.send(request, stream=True)
            except _RefusedLocation as e:
                raise FetchError(source, "scheme_not_allowed", repr(e.location[:100])) from e
            try:
                _check_head(source, response)
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    url = urljoin(url, location)
                    continue
                return await self._result(source, url, response)
            finally:
                await response.aclose()
        raise FetchError(source, "too_many_redirects", f"more than {self.limits.max_redirects}")

    async def _pinned_request(
        self, source: str, url: str, headers: dict[str, str], allowed: bool
    ) -> httpx.Request:
        """A request to the checked IP of ``url``'s host, with Host and SNI kept (G2)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(source, "scheme_not_allowed", repr(url[:100]))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            # An address needs no resolver (and no hop to a resolver thread).
            addresses = [str(ipaddress.ip_address(parts.hostname))]
        except ValueError:
            try:
                addresses = await asyncio.to_thread(self.resolve, parts.hostname, port)
            except OSError as e:
                raise FetchError(source, "dns_error", str(e)) from e
        if not addresses:
            raise FetchError(source, "dns_error", f"no address for {parts.hostname!r}")
        bad = [a for a in addresses if is_forbidden_address(a) and not self._allow_listed(a)]
        if bad and not allowed:
            raise FetchError(source, "private_address", f"{parts.hostname} -> {bad[0]}")
        ip = addresses[0]
        literal = f"[{ip}]" if ":" in ip else ip
        pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        return self._client.build_request(
            "GET", pinned, headers={**headers, "Host": host_header}, extensions=extensions
        )

    def _allow_listed(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%")[0])
        return any(address in network for network in self.allowed_networks)

    async def _result(self, source: str, url: str, response: httpx.Response) -> FetchResult:
        headers = {k.lower(): v for k, v in response.headers.items()}
        if response.status_code == 304:
            await _drain(response)
            return FetchResult(url, 304, b"", headers)
        if response.status_code != 200:
            raise FetchError(
                source, f"http_{response.status_code}", url[:200],
                status_code=response.status_code, retry_after=headers.get("retry-after"),
            )  # fmt: skip
        body = await read_body(source, response, self.limits.max_bytes)
        return FetchResult(url, 200, body, headers)


async def _drain(response: httpx.Response, limit: int = 64 * 1024) -> None:
    """Read a body we do not want (a 304's, empty by RFC 9110) so that the connection goes
    back to the pool: closing a response with its body unread closes the connection, and
    every 304 poll paid for a new TCP connection (bench/bench_feeds.py, issue #3)."""
    seen = 0
    async for chunk in response.aiter_raw():
        seen += len(chunk)
        if seen > limit:
            return  # not worth keeping the connection for: aclose() drops it


class _RefusedLocation(Exception):
    """A redirect to a scheme we never follow, refused before httpx parses the Location."""

    def __init__(self, location: str):
        super().__init__(location)
        self.location = location


async def _refuse_other_schemes(response: httpx.Response) -> None:
    """Response hook. httpx parses a redirect's Location itself (for ``next_request``) and
    fails on data: or javascript: with InvalidURL; refuse every non-http(s) scheme first."""
    location = response.headers.get("location", "").strip()
    if response.status_code not in REDIRECTS or not location:
        return
    try:
        scheme = urlsplit(location).scheme.lower()
    except ValueError:
        return  # unparseable: httpx says so as InvalidURL (bad_url)
    if scheme and scheme not in ("http", "https"):
        raise _RefusedLocation(location)


def _check_head(source: str, response: httpx.Response) -> None:
    raw = response.headers.raw
    size = sum(len(name) + len(value) for name, value in raw)
    if len(raw) > MAX_HEADERS or size > MAX_HEADER_BYTES:
        raise FetchError(source, "headers_too_large", f"{len(raw)} headers, {size} bytes")


async def read_body(source: str, response: httpx.Response, cap: int) -> bytes:
    """The decoded body, at most ``cap`` bytes raw and decoded, or a ``FetchError``."""
    decoder = _decoder(source, response.headers.get("content-encoding", ""))
    out = bytearray()
    raw = 0
    try:
        async for chunk in response.aiter_raw():
            raw += len(chunk)
            if raw > cap:
                raise FetchError(source, "body_too_large", f"over {cap} bytes on the wire")
            for piece in decoder.feed(chunk, cap - len(out)):
                out += piece
                if len(out) > cap:
                    raise FetchError(source, "body_too_large", f"over {cap} bytes decoded")
        out += decoder.finish()
    except zlib.error as e:
        raise FetchError(source, "decode_error", str(e)) from e
    if len(out) > cap:
        raise FetchError(source, "body_too_large", f"over {cap} bytes decoded")
    return bytes(out)


# Output of one decompress() call. The caller appends each piece before asking for the
# next, so a bomb costs the cap plus one step of memory; one call per chunk with the whole
# room as max_length handed over up to a cap's worth at once, held twice while appended
# (peak RSS 2.6 x the cap on a 1 GiB gzip bomb: RELIABILITY H7 wants < 2 x).
DECODE_STEP = 64 * 1024


class _Decoder:
    """Incremental gzip/deflate (or identity) decoding that never outruns the cap."""

    def __init__(self, kind: str):
        self.kind = kind
        self.z: zlib._Decompress | None = None
        if kind == "gzip":
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes, room: int) -> Iterator[bytes]:
        """The decoded pieces of ``chunk``, each at most DECODE_STEP bytes, stopping one byte
        past ``room`` (enough to know the body is over the cap)."""
        if self.kind == "identity":
            yield chunk
            return
        if self.z is None:  # deflate: RFC 9110 says zlib-wrapped; some servers send it raw
            wrapped = (
                len(chunk) >= 2 and (chunk[0] & 0x0F) == 8 and (chunk[0] << 8 | chunk[1]) % 31 == 0
            )
            self.z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        data, room = chunk, max(room, 0)
        while room >= 0:
            step = min(room + 1, DECODE_STEP)
            piece = self.z.decompress(data, step)
            yield piece
            room -= len(piece)
            data = self.z.unconsumed_tail
            if len(piece) < step and not data:
                return  # all input used and no output left pending: a full piece may hide more

    def finish(self) -> bytes:
        if self.z is None:
            return b""
        if self.z.unconsumed_tail:
            return self.z.unconsumed_tail[:1]  # more output was pending: over the cap
        if not self.z.eof:
            raise zlib.error("truncated compressed body")
        return self.z.flush()


def _decoder(source: str, header: str) -> _Decoder:
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > 1:
        raise FetchError(source, "stacked_encoding", header[:100])
    if not codings:
        return _Decoder("identity")
    if codings[0] in ("gzip", "x-gzip"):
        return _Decoder("gzip")
    if codings[0] == "deflate":
        return _Decoder("deflate")
    raise FetchError(source, "unsupported_encoding", codings[0][:40])


def _translate(source: str, error: httpx.HTTPError) -> FetchError:
    """httpx's errors, once, as our stable reasons."""
    text = str(error) or type(error).__name__
    if isinstance(error, httpx.ConnectTimeout):
        return FetchError(source, "connect_timeout", text)
    if isinstance(error, httpx.TimeoutException):
        return FetchError(source, "read_timeout", text)
    if isinstance(error, httpx.ConnectError):
        causes = _causes(error)
        if any(isinstance(c, ssl.SSLError) for c in causes) or "SSL" in text:
            return FetchError(source, "tls_error", text[:200])
        if any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in text:
            return FetchError(source, "connection_refused", text[:200])
        return FetchError(source, "connect_error", text[:200])
    if isinstance(error, httpx.RemoteProtocolError | httpx.LocalProtocolError):
        return FetchError(source, "protocol_error", text[:200])
    return FetchError(source, "http_error", f"{type(error).__name__}: {text[:200]}")


def _causes(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found
