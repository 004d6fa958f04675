"""The daemon: an in-process APScheduler timer that runs the pipeline's ticks.

APScheduler 3.x keeps its jobs in memory only (its FAQ: a job store must never
be shared between processes); it decides *when* a tick runs, the database
decides *what* is due. A tick that fails is logged and the next one runs.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from monitor.pipeline import Pipeline

log = logging.getLogger("monitor.daemon")
TICK_SECONDS = 0.5  # a due source or delivery waits at most this long


class Daemon:
    def __init__(self, pipeline: Pipeline, tick_seconds: float = TICK_SECONDS):
        self.pipeline = pipeline
        self.tick_seconds = tick_seconds
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def run(self) -> None:
        """Run until ``stop()`` (or SIGTERM/SIGINT through ``install_signal_handlers``)."""
        for name, tick in (
            ("poll", self.pipeline.poll_due),
            ("deliver", lambda: self.pipeline.deliver_due(wait=False)),
        ):
            self.scheduler.add_job(
                _guarded(name, tick), "interval", seconds=self.tick_seconds, id=name,
                next_run_time=self.pipeline.clock(),
            )  # fmt: skip
        self.add_digest_jobs()
        self.scheduler.start()
        log.info("daemon started sources=%d rules=%d", len(self.pipeline.config.source_names),
                 len(self.pipeline.config.rules))  # fmt: skip
        self.stopping.wait()
        log.info("daemon stopping")
        self.scheduler.shutdown(wait=True)  # let a running tick finish its transaction
        log.info("daemon stopped")

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

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal received signal=%s", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _guarded(name: str, tick: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            tick()
        except Exception:  # a bug in one tick must not stop the daemon: log it, tick again
            log.exception("tick failed tick=%s", name)

    return run
