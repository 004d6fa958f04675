"""S15: the config replaced by invalid files while the daemon runs (RELIABILITY 3(b), 3(c) 9).

A real `monitor run` daemon polls growing loopback feeds and delivers; its monitor.yaml is
replaced R times by an invalid one, alternately written in place (truncate and write) and
by an atomic rename, each time followed by a valid file again. /healthz is probed all the
while (uptime through reloads)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from feedserver import FeedServer, GrowingFeeds

from casebook import case, figure, repetitions
from faultkit import (
    MonitorProcess,
    TimedReceiver,
    eventually,
    feed_config,
    feeds_of,
    settle,
    tally,
)

pytestmark = pytest.mark.reliability

INVALID = [
    "database: sqlite:///m.db\nsources: [\n",  # not YAML
    "database: sqlite:///m.db\nbogus_key: 1\n",  # unknown key
    "database: sqlite:///m.db\ndefaults: {interval: 10 minutes}\n",  # not a duration
    "database: sqlite:///m.db\nsinks: &a [*a]\n",  # an alias
]


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, 3, 2.0)
    server.stop()


@pytest.fixture
def receiver() -> Iterator[TimedReceiver]:
    r = TimedReceiver().start()
    yield r
    r.stop()


class Prober:
    """/healthz every 0.2 s in a thread: how many answers were 200, of how many probes."""

    def __init__(self, daemon: MonitorProcess):
        self.daemon, self.ok, self.probes = daemon, 0, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.2):
            self.probes += 1
            with contextlib.suppress(httpx.HTTPError):  # no answer: counted as down
                self.ok += httpx.get(f"{self.daemon.base}/healthz", timeout=10).status_code == 200

    def stop(self) -> float:
        self.stopping.set()
        self.thread.join(timeout=15)
        return 100.0 * self.ok / max(1, self.probes)


def replace(path: Path, text: str, atomic: bool) -> None:
    if atomic:
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:  # truncate, then write: the editor's way
            f.write(text)


@case("S15", "fault", "config replaced by invalid YAML while running: kept, logged once, gauge 0")
def test_invalid_configs_are_rejected_while_work_goes_on(
    tmp_path: Path, feeds: GrowingFeeds, receiver: TimedReceiver, daemons,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """Each invalid replacement (in place or by rename) is rejected and logged once, the
    reload gauge drops to 0, polls and deliveries go on, /healthz stays 200; the valid file
    written after it is taken again, and a changed valid file is applied."""
    changes = repetitions(request.config, fast=4, full=12)
    config = feed_config(tmp_path, feeds_of(feeds), receiver.url())
    valid = config.read_text()
    daemon = daemons(config, tmp_path / "daemon.log")
    daemon.wait_for("daemon started")
    daemon.wait_for("poll source=")
    prober = Prober(daemon)
    kept_working = 0
    try:
        for n in range(changes):
            mark, delivered = len(daemon.lines), len(receiver.requests)
            replace(config, INVALID[n % len(INVALID)], atomic=n % 2 == 1)
            daemon.wait_for("config reload rejected errors=", after=mark)
            assert daemon.metrics()["monitor_config_last_reload_successful"] == 0
            daemon.wait_for("poll source=", after=mark)  # still polling on the good config
            with receiver.changed:
                kept_working += receiver.changed.wait_for(
                    lambda d=delivered: len(receiver.requests) > d, 30
                )
            replace(config, valid, atomic=n % 2 == 0)
            eventually(lambda: daemon.metrics()["monitor_config_last_reload_successful"] == 1,
                       "the valid config taken again")  # fmt: skip
        mark = len(daemon.lines)
        replace(config, valid.replace("interval: 1s}", "interval: 2s}"), atomic=True)
        daemon.wait_for("config reloaded", after=mark)
        uptime = prober.stop()
        expected, stored, received = settle(feeds, f"sqlite:///{tmp_path / 'm.db'}", receiver)
    finally:
        prober.stop()
    rejected = daemon.count("config reload rejected errors=")
    assert daemon.terminate() == 0
    loss = tally("S15", expected_hits=expected, stored_hits=stored, expected_ids=set(),
                 received=received)  # fmt: skip
    figure("config", "S15 invalid reloads rejected / attempted", f"{rejected}/{changes}")
    figure("config", "S15 deliveries during an invalid config (changes with one)",
           f"{kept_working}/{changes}")  # fmt: skip
    figure("config", "S15 uptime through reloads (/healthz 200 share)", f"{uptime:.1f} %")
    assert rejected == changes  # once per change, never repeated while the file stays bad
    assert kept_working == changes and uptime == 100.0
    assert loss.hits_lost == 0 and loss.hits_duplicated == 0 and loss.deliveries_missing == 0
