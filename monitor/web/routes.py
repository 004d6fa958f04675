"""The dashboard's pages (issue #8): recent hits, a hit, rule timelines, source health.

Server-rendered with Jinja2 (autoescape on: article text is data, never markup)
and read-only. ``create_web_app`` returns a Starlette app that ``monitor.http``
mounts beside /healthz and /metrics, and that ``monitor serve`` runs alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from monitor.config import Config, is_loopback_listen
from monitor.domain import Rule, utcnow
from monitor.errors import StorageError
from monitor.web.auth import TokenGate
from monitor.web.chart import ChartRow, days_ending, render_chart
from monitor.web.marks import excerpt, mark, marked_article
from monitor.web.queries import HitFilter, WebQueries

HERE = Path(__file__).parent
PAGE_SIZE = 50
CHART_DAYS = 30
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadRequest(ValueError):
    """A filter the page cannot use; shown to the reader with status 400."""


@dataclass(frozen=True)
class Filters:
    """The hit list's GET parameters, validated."""

    rule: str = ""
    tag: str = ""
    severity: str = ""
    source: str = ""
    since: str = ""
    until: str = ""

    def params(self, **extra: str) -> str:
        pairs = {k: v for k, v in self.__dict__.items() if v} | extra
        return urlencode(pairs)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every {{ }} is escaped unless wrapped in Markup on purpose
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M UTC") if d else "—"
    return env


def create_web_app(
    engine: Engine,
    config: Callable[[], Config],
    listen: str,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    """The dashboard over ``engine``; ``config`` returns the current (reloaded) config."""
    pages = _Pages(WebQueries(engine), config, clock, _environment())
    gate = Middleware(TokenGate, loopback=is_loopback_listen(listen),
                      token=lambda: config().http_token)  # fmt: skip
    routes = [
        Route("/", pages.hits),
        Route("/hits/{hit_id:int}", pages.hit),
        Route("/rules", pages.rules),
        Route("/sources", pages.sources),
        Route("/static/web.css", pages.stylesheet),
    ]
    return Starlette(routes=routes, middleware=[gate])


class _Pages:
    def __init__(self, queries: WebQueries, config: Callable[[], Config],
                 clock: Callable[[], datetime], env: jinja2.Environment):  # fmt: skip
        self.queries = queries
        self.config = config
        self.clock = clock
        self.env = env

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(now=self.clock(), **context)
        return HTMLResponse(html, status_code=status)

    def hits(self, request: Request) -> Response:
        config = self.config()
        try:
            filters, where = _filters(request, config)
            before = _cursor(request.query_params.get("before"))
            lines = self.queries.recent_hits(where, PAGE_SIZE + 1, before)
            counts = self.queries.rule_counts(
                self.clock() - timedelta(days=CHART_DAYS - 1), where.rules
            )
        except BadRequest as e:
            return self.render("error.html", 400, message=str(e))
        except StorageError as e:
            return self.render("error.html", 503, message=str(e))
        more = len(lines) > PAGE_SIZE
        lines = lines[:PAGE_SIZE]
        rules = {r.id: r for r in config.rules}
        after = f"{_micros(lines[-1].created_at)}.{lines[-1].id}" if more else None
        return self.render(
            "hits.html", filters=filters, config=config, rules=rules,
            rows=[(line, mark(line.text, [(m.start, m.end) for m in line.matches], 0,
                              len(line.title)),
                   excerpt(line.text, line.matches, len(line.title) + 2), rules.get(line.rule_id))
                  for line in lines],
            next_page=filters.params(before=after) if after else None,
            first_page=filters.params() if before else None,
            chart=self._chart(config, counts, compact=True),
            tags=sorted({t for r in config.rules for t in r.tags}),
        )  # fmt: skip

    def hit(self, request: Request) -> Response:
        config = self.config()
        try:
            detail = self.queries.hit(request.path_params["hit_id"])
        except StorageError as e:
            return self.render("error.html", 503, message=str(e))
        if detail is None:
            return self.render("error.html", 404, message="no such hit")
        rules = {r.id: r for r in config.rules}
        title, body = marked_article(detail.hit.title, detail.hit.text, detail.hit.matches)
        return self.render("hit.html", detail=detail, rule=rules.get(detail.hit.rule_id),
                           title=title, body=body)  # fmt: skip

    def rules(self, request: Request) -> Response:
        config = self.config()
        try:
            days = int(request.query_params.get("days", CHART_DAYS))
            if not 1 <= days <= 366:
                raise ValueError
        except ValueError:
            return self.render("error.html", 400, message="days must be a number from 1 to 366")
        try:
            counts = self.queries.rule_counts(self.clock() - timedelta(days=days - 1))
        except StorageError as e:
            return self.render("error.html", 503, message=str(e))
        chart, rows = self._chart(config, counts, days=days), _chart_rows(config, counts)
        return self.render("rules.html", chart=chart, rows=rows, days=days)

    def sources(self, _request: Request) -> Response:
        try:
            sources = self.queries.sources()
            failing = self.queries.failing_deliveries()
        except StorageError as e:
            return self.render("error.html", 503, message=str(e))
        configured = set(self.config().source_names)
        return self.render("sources.html", sources=sources, failing=failing,
                           configured=configured)  # fmt: skip

    def stylesheet(self, _request: Request) -> Response:
        return FileResponse(HERE / "static" / "web.css", media_type="text/css")

    def _chart(self, config: Config, counts: dict[str, dict[str, int]],
               days: int = CHART_DAYS, compact: bool = False) -> Markup:  # fmt: skip
        rows = _chart_rows(config, counts)
        if compact:
            rows = [row for row in rows if row.total][:12]
        # render_chart escapes every string it writes, so its SVG is safe to insert as-is
        return Markup(render_chart(rows, days_ending(self.clock().date(), days)))


def _chart_rows(config: Config, counts: dict[str, dict[str, int]]) -> list[ChartRow]:
    """Configured rules first (by total, busiest first), then ids no longer configured."""
    known = {r.id: r for r in config.rules}
    rows = [ChartRow(r.id, r.title, str(r.severity), counts.get(r.id, {})) for r in config.rules]
    rows += [ChartRow(rule_id, f"{rule_id} (no longer configured)", "info", per_day)
             for rule_id, per_day in counts.items() if rule_id not in known]  # fmt: skip
    return sorted(rows, key=lambda row: (-row.total, row.rule_id))


def _filters(request: Request, config: Config) -> tuple[Filters, HitFilter]:
    q = request.query_params
    filters = Filters(**{k: q.get(k, "").strip() for k in Filters.__dataclass_fields__})
    rules: set[str] | None = None
    chosen: list[Callable[[Rule], bool]] = []
    if filters.rule:
        chosen.append(lambda r: r.id == filters.rule)
    if filters.tag:
        chosen.append(lambda r: filters.tag in r.tags)
    if filters.severity:
        chosen.append(lambda r: str(r.severity) == filters.severity)
    if chosen:
        rules = {r.id for r in config.rules if all(test(r) for test in chosen)}
        if filters.rule and not filters.tag and not filters.severity:
            rules.add(filters.rule)  # a rule removed from the config still has its hits
    since, until = _day(filters.since, "since"), _day(filters.until, "until")
    if since and until and until < since:
        raise BadRequest("until is before since")
    where = HitFilter(
        rules=frozenset(rules) if rules is not None else None,
        source=filters.source or None,
        since=since,
        until=until + timedelta(days=1) if until else None,  # the until day is included
    )
    return filters, where


def _day(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2026-05-01, got {text!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _micros(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def _cursor(text: str | None) -> tuple[datetime, int] | None:
    """``<microseconds since epoch>.<hit id>``: the last row of the previous page."""
    if not text:
        return None
    micros, _, hit_id = text.partition(".")
    if not (micros.isdigit() and hit_id.isdigit()):
        raise BadRequest("before must be a page cursor from a 'next page' link")
    return EPOCH + timedelta(microseconds=int(micros)), int(hit_id)
