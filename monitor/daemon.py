"""The daemon: an in-process APScheduler timer that runs the pipeline's ticks.

APScheduler 3.x keeps its jobs in memory only (its FAQ: a job store must never
be shared between processes); it decides *when* a tick runs, the database
decides *what* is due, so every replica can run the same jobs. A tick that
fails is logged and the next one runs.

Jobs: poll and deliver (every tick), renew this replica's leases, heartbeat
and chores (on the chores leader only), config reload (a file watch, or
SIGHUP), and one cron job per digest sink. SIGTERM/SIGINT stop the timer, let
running ticks finish, then release every lease so others need not wait.

A tick that fails because the database is away (locked, full, restarting,
unreachable: ``transient_reason``) is not a bug: it is logged once per spell,
that tick backs off (0.5 s doubling to 5 s) instead of failing twice a
second, and a line says when it works again (RELIABILITY S5-S7, S16).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import SQLAlchemyError

from monitor import metrics
from monitor.config import Config
from monitor.http import Health, HttpServer, create_app
from monitor.pipeline import Pipeline
from monitor.reload import ConfigWatcher
from monitor.store.coordination import heartbeat, resign
from monitor.store.database import transient_reason
from monitor.store.leases import DELIVERY_LEASE, POLL_LEASE, release, renew

log = logging.getLogger("monitor.daemon")
TICK_SECONDS = 0.5  # a due source or delivery waits at most this long
RENEW_SECONDS = min(POLL_LEASE, DELIVERY_LEASE).total_seconds() / 3  # renew well before expiry
HEARTBEAT_SECONDS = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0  # a tick's pause while the database is away


class Daemon:
    def __init__(
        self, pipeline: Pipeline, config_path: Path | None = None,
        tick_seconds: float = TICK_SECONDS,
    ):  # fmt: skip
        self.pipeline = pipeline
        self.tick_seconds = tick_seconds
        self.stopping = threading.Event()
        self.hangup = threading.Event()
        self.watcher = (
            ConfigWatcher(config_path, pipeline.config, self.apply) if config_path else None
        )
        self.http: HttpServer | None = None
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def run(self) -> None:
        """Run until ``stop()`` (or SIGTERM/SIGINT through ``install_signal_handlers``)."""
        pipeline = self.pipeline
        now = pipeline.clock()
        jobs: list[tuple[str, Callable[[], Any], float]] = [
            ("poll", pipeline.poll_due, self.tick_seconds),
            ("deliver", lambda: pipeline.deliver_due(wait=False), self.tick_seconds),
            ("renew", lambda: renew(pipeline.store, pipeline.owner, pipeline.clock()),
             RENEW_SECONDS),
            ("heartbeat", self.beat, HEARTBEAT_SECONDS),
            ("reload", self.check_config, 1.0),
        ]  # fmt: skip
        for name, tick, seconds in jobs:
            self.scheduler.add_job(_guarded(name, tick), "interval", seconds=seconds, id=name,
                                   next_run_time=now)  # fmt: skip
        self.add_digest_jobs()
        self.start_http()
        self.scheduler.start()
        log.info("daemon started owner=%s sources=%d rules=%d config=%s", pipeline.owner,
                 len(pipeline.config.source_names), len(pipeline.config.rules),
                 pipeline.config.digest)  # fmt: skip
        self.stopping.wait()
        log.info("daemon stopping")
        self.scheduler.shutdown(wait=True)  # let running ticks finish their transactions
        pipeline.close()
        release(pipeline.store, pipeline.owner)
        resign(pipeline.store, pipeline.owner)
        if self.http:
            self.http.stop()
        log.info("daemon stopped owner=%s (leases released)", pipeline.owner)

    def beat(self) -> None:
        """Report this replica's config hash, then run the chores if this replica leads."""
        p = self.pipeline
        heartbeat(p.store, p.owner, socket.gethostname(), os.getpid(), p.config.digest,
                  p.clock())  # fmt: skip
        p.run_chores()

    def check_config(self) -> None:
        if self.watcher is not None:
            force = self.hangup.is_set()
            self.hangup.clear()
            self.watcher.check(force=force)

    def apply(self, config: Config) -> None:
        """Swap in a validated new config; digest jobs follow the new sinks."""
        self.pipeline.reload(config)
        for job in self.scheduler.get_jobs():
            if job.id.startswith("digest:"):
                job.remove()
        self.add_digest_jobs()

    def add_digest_jobs(self) -> None:
        """One cron job per digest sink (``digest: "0 8 * * *"``, ``timezone: Asia/Seoul``).

        The cron trigger only says when; what is sent is every pending delivery of that sink in
        the database, so a digest missed while the daemon was down goes out with the next one.
        """
        for sink, (cron, timezone) in self.pipeline.digests().items():
            self.scheduler.add_job(
                _guarded(f"digest:{sink}", functools.partial(self.pipeline.send_digest, sink)),
                CronTrigger.from_crontab(cron, timezone=ZoneInfo(timezone)), id=f"digest:{sink}",
            )  # fmt: skip

    def start_http(self) -> None:
        listen = self.pipeline.config.http_listen
        if listen:
            health = Health(
                self.pipeline.store, lambda: self.pipeline.config.digest,
                config=lambda: self.pipeline.config, listen=listen,
            )  # fmt: skip
            self.http = HttpServer(create_app(health), listen)
            self.http.start()

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal received signal=%s", signal.Signals(signum).name)
            self.stop()

        def hangup(_signum: int, _frame: FrameType | None) -> None:
            self.hangup.set()  # the reload job picks it up within a second

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hangup)


def _guarded(name: str, tick: Callable[[], Any]) -> Callable[[], None]:
    away = _Backoff(name)

    def run() -> None:
        if away.waiting():
            return
        try:
            tick()
        except SQLAlchemyError as e:
            reason = transient_reason(e)
            if reason is None:
                log.exception("tick failed tick=%s", name)
            else:
                away.failed(reason, e)
        except Exception:  # a bug in one tick must not stop the daemon: log it, tick again
            log.exception("tick failed tick=%s", name)
        else:
            away.succeeded()
            metrics.last_tick.labels(tick=name).set(time.time())

    return run


class _Backoff:
    """One tick's state while the database is away: when to try again, since when."""

    def __init__(self, tick: str):
        self.tick = tick
        self.since: float | None = None
        self.delay = BACKOFF_FIRST
        self.retry_at = 0.0

    def waiting(self) -> bool:
        return self.since is not None and time.monotonic() < self.retry_at

    def failed(self, reason: str, error: Exception) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.delay = now, BACKOFF_FIRST
            log.warning("tick failed tick=%s reason=%s error=%r (database away; backing off)",
                        self.tick, reason, str(error).splitlines()[0][:200])  # fmt: skip
        else:
            self.delay = min(self.delay * 2, BACKOFF_MAX)
        self.retry_at = now + self.delay

    def succeeded(self) -> None:
        if self.since is not None:
            log.info("tick recovered tick=%s after=%.1fs", self.tick, time.monotonic() - self.since)
            self.since = None
