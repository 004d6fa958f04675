"""Loopback webhook receivers for the delivery tests (RELIABILITY.md 3.0).

A real HTTP server on 127.0.0.1 that records every request and answers as
scripted per path: a status with headers and body, a dropped connection, or
an answer held until the test releases it (a slow receiver). The generic
receiver verifies each request with the ``standardwebhooks`` package, as a
real receiver would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    drop: bool = False  # close the connection without answering
    hold: threading.Event | None = None  # answer only once this is set (a slow receiver)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: dict[str, bool] = field(default_factory=dict)  # secret label -> signature ok

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class Receiver:
    """Scripted replies per path; ``secrets`` maps a label to the secret receivers hold."""

    def __init__(self, secrets: dict[str, str | bytes] | None = None):
        self.script: dict[str, list[Reply]] = {}
        self.requests: list[Received] = []
        self.truncated = 0  # requests whose body ended before its Content-Length
        self.secrets = secrets or {}
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (the S4 soak's kill -9): like any server,
                    # take it as never received; the sender sends it again, with its id.
                    receiver.truncated += 1
                    return
                receiver.record(self.path, dict(self.headers.items()), body)
                reply = receiver.next_reply(self.path)
                if reply.hold is not None:
                    reply.hold.wait(30)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def answer(self, path: str, *replies: Reply) -> None:
        """Reply to ``path`` with these in order; the last one repeats."""
        self.script[path] = list(replies)

    def next_reply(self, path: str) -> Reply:
        replies = self.script.get(path.split("?")[0])
        if not replies:
            return Reply()
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        verified = {}
        for label, secret in self.secrets.items():
            try:
                Webhook(secret).verify(body, lowered)
                verified[label] = True
            except Exception:  # the library's error types: any failure is "not verified"
                verified[label] = False
        with self.changed:
            self.requests.append(Received(path, lowered, body, verified))
            self.changed.notify_all()

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10.0) -> bool:
        """Wait (on a condition, not a sleep) until ``count`` requests arrived."""

        def enough() -> bool:
            got = self.requests if path is None else self.on(path)
            return len(got) >= count

        with self.changed:
            return self.changed.wait_for(enough, timeout)


@contextmanager
def running(secrets: dict[str, str | bytes] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(secrets)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
