"""The daemon as a real process: picks up new files, refuses a twin, stops cleanly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import run_monitor
from monitor.daemon import _guarded

NEW_ARTICLE = """# Matsegora hosts reception

Ambassador Alexander Matsegora hosted a reception at the Russian embassy.
"""


class Daemon:
    """A `monitor run` subprocess whose output lines can be awaited."""

    def __init__(self, cwd: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        env.pop("DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run"], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """Block until a line containing ``text`` appears; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if text in line:
                return line
        pytest.fail(f"{text!r} not seen within {timeout}s; output:\n{''.join(seen)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def daemon(workdir: Path):
    d = Daemon(workdir)
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_new_file_is_picked_up_and_sigterm_stops_cleanly(daemon: Daemon, workdir: Path) -> None:
    """A file dropped into the seed folder alerts within seconds; SIGTERM exits 0."""
    daemon.wait_for("daemon started")
    daemon.wait_for("(official-matsegora)")  # the seeds themselves
    started = time.monotonic()
    (workdir / "seeds" / "reception.md").write_text(NEW_ARTICLE)
    daemon.wait_for("Matsegora hosts reception", timeout=15)
    pickup = time.monotonic() - started
    assert daemon.stop() == 0
    daemon.wait_for("daemon stopped")
    print(f"new file alerted after {pickup:.1f}s")


def test_second_daemon_on_same_sqlite_refuses(daemon: Daemon, workdir: Path) -> None:
    """While one daemon runs, a second `monitor run` on the same file exits 1 and says why."""
    daemon.wait_for("daemon started")
    second = run_monitor("run", "--once", cwd=workdir)
    assert second.returncode == 1
    assert "already running" in second.stderr and "PostgreSQL" in second.stderr
    assert daemon.stop() == 0


def test_a_failing_tick_is_logged_and_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A tick that raises is logged with its name; the scheduler thread never sees it."""

    def broken() -> None:
        raise RuntimeError("boom")

    _guarded("poll", broken)()
    assert "tick failed tick=poll" in caplog.text and "boom" in caplog.text


def test_digest_job_fires_at_eight_in_seoul(tmp_path: Path) -> None:
    """A digest sink gets a cron job; its next run is 08:00 Asia/Seoul (23:00 UTC)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.pipeline import Pipeline
    from monitor.store import Store
    from monitor.wiring import build_sinks

    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text("rules: []\n")
    (tmp_path / "monitor.yaml").write_text(
        "database: sqlite:///m.db\nsinks:\n  - {name: team, type: slack, url: "
        "'https://hooks.example/x', digest: '0 8 * * *', timezone: Asia/Seoul}\n"
        "defaults: {notify: [team]}\n"
    )
    config = load_config(tmp_path / "monitor.yaml", env={})
    store = Store(config.database_url)
    pipeline = Pipeline(config, store, build_sinks(config))
    daemon = Daemon(pipeline)
    daemon.add_digest_jobs()
    [job] = daemon.scheduler.get_jobs()
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    fire = job.trigger.get_next_fire_time(None, now)
    pipeline.close()
    store.close()
    assert fire.astimezone(ZoneInfo("Asia/Seoul")).hour == 8
    assert fire.astimezone(UTC) == datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
