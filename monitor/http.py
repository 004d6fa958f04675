"""The daemon's HTTP endpoints on ``http.listen``: ``/healthz``, ``/metrics`` and,
when the daemon passes its config, the dashboard (``monitor.web``) at ``/``.

A Starlette app served by uvicorn in a background thread, so a slow scrape
never delays a tick. Figures that live in the database are read at scrape
time; a database that cannot be reached, or writes that fail (a full disk, a
lock held past ``busy_timeout``), make ``/healthz`` answer 503 and say which.
Both endpoints talk to the database in a worker thread, never on the event
loop, so a database that hangs cannot stall the server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from monitor import metrics
from monitor.config import Config
from monitor.domain import utcnow
from monitor.store import Store
from monitor.store.coordination import live_replicas
from monitor.store.database import health_of
from monitor.web import create_web_app

log = logging.getLogger("monitor.http")
LIVE_WITHIN = timedelta(minutes=1)  # heartbeats come every 10 s
STALE_TICK_SECONDS = 60.0  # a daemon whose ticks stopped this long ago is not healthy


@dataclass
class Health:
    """What the endpoints need from the running daemon."""

    store: Store
    config_hash: Callable[[], str]
    # The dashboard (issue #8) needs the current config (hot reload swaps it) and the
    # address it listens on (no token is asked on loopback). Without them: no dashboard.
    config: Callable[[], Config] | None = None
    listen: str | None = None


class DatabaseCollector(Collector):
    """Outbox and source figures, read from the database at scrape time."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self.store.outbox_stats(utcnow())
        except SQLAlchemyError as e:
            log.warning("metrics: database unavailable error=%r", str(e).splitlines()[0])
            up = GaugeMetricFamily("monitor_database_up", "1 if the database answered.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("monitor_database_up", "1 if the database answered.")
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily(
            "monitor_deliveries", "Deliveries by sink and status.", labels=["sink", "status"]
        )
        for (sink, status), count in sorted(stats.by_status.items()):
            by_status.add_metric([sink, status], count)
        yield by_status
        depth = GaugeMetricFamily("monitor_outbox_depth", "Deliveries waiting to be sent.")
        depth.add_metric([], stats.pending)
        yield depth
        oldest = GaugeMetricFamily(
            "monitor_outbox_oldest_age_seconds", "Age of the oldest pending delivery."
        )
        oldest.add_metric([], stats.oldest_pending_age)
        yield oldest
        sources = GaugeMetricFamily("monitor_sources", "Sources by status.", labels=["status"])
        for status, count in sorted(stats.sources_by_status.items()):
            sources.add_metric([status], count)
        yield sources
        yield self.replicas()

    def replicas(self) -> GaugeMetricFamily:
        """Live replicas per config hash: more than one hash means the configs differ."""
        family = GaugeMetricFamily(
            "monitor_replicas", "Replicas seen in the last minute, by config hash.",
            labels=["config_hash"],
        )  # fmt: skip
        hashes = Counter(r.config_hash for r in live_replicas(self.store, utcnow(), LIVE_WITHIN))
        for config_hash, count in sorted(hashes.items()):
            family.add_metric([config_hash], count)
        return family


_collector: DatabaseCollector | None = None


def create_app(health: Health) -> Starlette:
    global _collector
    if _collector is not None:  # one database collector per process, the newest store's
        metrics.REGISTRY.unregister(_collector)
    _collector = DatabaseCollector(health.store)
    metrics.REGISTRY.register(_collector)

    async def healthz(_request: Request) -> Response:
        now = time.time()
        ticks = {
            sample.labels["tick"]: now - sample.value
            for sample in next(iter(metrics.last_tick.collect())).samples
        }
        try:
            await run_in_threadpool(health.store.ping)
            database = "ok"
        except SQLAlchemyError:
            database = "db_unavailable"
        storage = health_of(health.store.engine)
        stale = [tick for tick, age in ticks.items() if age > STALE_TICK_SECONDS]
        ok = database == "ok" and storage.state == "ok" and not stale
        body: dict[str, Any] = {
            "status": "ok" if ok else "unhealthy",
            "database": database,
            "storage": storage.state,  # ok | storage_degraded | db_unavailable (last write)
            "storage_reason": storage.reason,
            "last_tick_age_seconds": {k: round(v, 3) for k, v in ticks.items()},
            "config_hash": health.config_hash(),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, metrics.REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/metrics", metrics_endpoint)]
    if health.config is not None and health.listen is not None:
        dashboard = create_web_app(health.store.engine, health.config, health.listen)
        routes.append(Mount("/", app=dashboard))
    return Starlette(routes=routes)


class HttpServer:
    """uvicorn in a daemon thread; ``stop()`` asks it to finish."""

    def __init__(self, app: Starlette, listen: str):
        host, _, port = listen.rpartition(":")
        config = uvicorn.Config(
            app, host=host.strip("[]") or "127.0.0.1", port=int(port), log_level="warning",
            lifespan="off",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError("HTTP server did not start")
            time.sleep(0.01)  # waiting for uvicorn to bind; it offers no event
        log.info("http listening address=%s", self.address)

    @property
    def address(self) -> str:
        sockets = [s for server in self.server.servers for s in server.sockets]
        host, port = sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
