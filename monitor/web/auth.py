"""Who may read the dashboard, and the headers every page carries.

On a loopback address nobody else can connect, so no login is asked. On any
other address a token is required: ``Authorization: Bearer <token>``
(RFC 6750 §2.1), or ``?token=<token>`` once in a browser, which sets an
HttpOnly cookie and redirects to the same URL without the token so it does not
stay in the address bar, the history or a Referer. Tokens are compared in
constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

COOKIE = "monitor_token"
# No script at all, styles only from our own stylesheet, images only inline SVG/data:
# article text that slipped through escaping still could not run or load anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_token_valid(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def presented_token(request: Request) -> str | None:
    """The bearer token from the header, else the cookie."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


class TokenGate(BaseHTTPMiddleware):
    """Refuses requests without the token unless the page listens on loopback only.

    ``token`` is read per request, so a reloaded config's new token applies at once.
    """

    def __init__(self, app: ASGIApp, *, loopback: bool, token: Callable[[], str | None]):
        super().__init__(app)
        self.loopback = loopback
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._gate(request, call_next)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _gate(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.loopback:
            return await call_next(request)
        expected = self.token()
        if expected is None:  # `monitor check` refuses this config; refuse here as well
            return PlainTextResponse("the dashboard needs http.token off loopback", 403)
        from_query = request.query_params.get("token")
        if from_query is not None:
            if not is_token_valid(from_query, expected):
                return _unauthorized()
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(COOKIE, expected, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")  # fmt: skip
            return redirect
        if is_token_valid(presented_token(request), expected):
            return await call_next(request)
        return _unauthorized()


def _unauthorized() -> Response:
    return PlainTextResponse(
        "a token is required: send 'Authorization: Bearer <token>' or open ?token=<token>",
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="monitor"'},
    )
