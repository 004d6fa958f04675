"""The exception tree. Every error we raise derives from ``MonitorError``.

    MonitorError
    ├── ConfigError        bad config or watchlist; carries every problem found
    ├── QueryError         a query that does not parse; carries the column
    ├── SourceError        one source could not be read (the loop goes on)
    │   └── FetchError     an HTTP fetch failed; carries the status and Retry-After
    ├── StorageError       the database refused or is held by another process
    │   └── LeaseLost      another replica took over a row we were working on
    ├── ModelError         the configured spaCy pipeline (nlp.model) cannot be loaded
    └── DeliveryError      one sink could not take one alert

Foreign errors are translated once, where they enter (``raise ... from e``).
"""

from __future__ import annotations

from dataclasses import dataclass


class MonitorError(Exception):
    """Root of every error monitor raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One config problem: the file, the place inside it, and what is wrong."""

    file: str
    place: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.place}" if self.place else self.file
        return f"{where}: {self.message}"


class ConfigError(MonitorError):
    """The config (or a watchlist) is invalid; ``problems`` lists every error."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class QueryError(MonitorError):
    """A query does not parse. ``column`` is 1-based."""

    def __init__(self, column: int, message: str):
        self.column = column
        self.message = message
        super().__init__(f"column {column}: {message}")


class SourceError(MonitorError):
    """One source (or one item of it) could not be read; ``reason`` is a stable key."""

    def __init__(self, source: str, reason: str, detail: str = ""):
        self.source = source
        self.reason = reason
        self.detail = detail
        super().__init__(f"{source}: {reason}" + (f": {detail}" if detail else ""))


class FetchError(SourceError):
    """A feed fetch failed. ``retry_after`` is the raw header, for the scheduler to judge."""

    def __init__(
        self,
        source: str,
        reason: str,
        detail: str = "",
        *,
        status_code: int | None = None,
        retry_after: str | None = None,
    ):
        super().__init__(source, reason, detail)
        self.status_code = status_code
        self.retry_after = retry_after


class StorageError(MonitorError):
    """The database cannot be used (locked by another process, bad URL...)."""


class LeaseLost(StorageError):
    """Our lease on a row expired and another replica claimed it: the work is discarded."""

    def __init__(self, kind: str, key: object, token: int):
        self.kind = kind
        self.key = key
        super().__init__(f"lease_lost {kind}={key} token={token}")


class ModelError(MonitorError):
    """The spaCy pipeline named by ``nlp.model`` is not installed or cannot be loaded."""

    def __init__(self, model: str, message: str):
        self.model = model
        super().__init__(message)


class DeliveryError(MonitorError):
    """One sink could not take one alert. ``retryable`` says whether to try again.

    ``status_code`` is the receiver's HTTP status (None for network errors),
    ``retry_after`` the receiver's hint in seconds (Retry-After, Discord's
    ``retry_after``), and ``gone`` means the destination no longer exists
    (410, Discord 404): the sink is disabled until its URL changes (G8).
    """

    def __init__(
        self, sink: str, message: str, *, retryable: bool = True, status_code: int | None = None,
        retry_after: float | None = None, gone: bool = False,
    ):  # fmt: skip
        self.sink = sink
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        self.gone = gone
        super().__init__(f"{sink}: {message}")
