"""A running daemon: /metrics and /healthz on http.listen, hot reload, SIGHUP, SIGTERM."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_daemon import Daemon

RULE = "  - {id: reload-test, title: Zanzibar watch, query: Zanzibar}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(workdir: Path, name: str, text: str) -> None:
    (workdir / "seeds" / name).write_text(text)


@pytest.fixture
def served(workdir: Path):
    port = free_port()
    config = workdir / "config" / "monitor.yaml"
    config.write_text(config.read_text().replace("listen: null", f"listen: 127.0.0.1:{port}"))
    daemon = Daemon(workdir)
    yield daemon, workdir, f"http://127.0.0.1:{port}"
    if daemon.proc.poll() is None:
        daemon.proc.kill()
        daemon.proc.wait()


def scrape(base: str) -> dict[str, list]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_and_health_from_the_daemon(served) -> None:
    """The daemon's /metrics parses and counts its polls and hits; /healthz answers 200."""
    daemon, _, base = served
    daemon.wait_for("(official-matsegora)")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = scrape(base)
        hits = {s.labels.get("rule"): s.value for s in found.get("monitor_hits", [])
                if s.name == "monitor_hits_total"}  # fmt: skip
        if hits.get("official-matsegora"):
            break
    assert hits.get("official-matsegora") == 1
    assert found["monitor_config_last_reload_successful"][0].value == 1
    assert {s.labels["tick"] for s in found["monitor_last_tick_timestamp_seconds"]} >= {"poll"}
    health = httpx.get(f"{base}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["database"] == "ok"
    assert daemon.stop() == 0


def test_hot_reload_applies_valid_and_rejects_invalid(served) -> None:
    """A new rule applies without restart; a broken watchlist is rejected while polling goes on."""
    daemon, workdir, base = served
    daemon.wait_for("daemon started")
    watchlist = workdir / "config" / "watchlists" / "extra.yaml"
    watchlist.write_text("rules:\n" + RULE)
    daemon.wait_for("config reloaded")
    seed(workdir, "zanzibar.md", "# Envoy visits Zanzibar\n\nThe envoy flew to Zanzibar.\n")
    daemon.wait_for("(reload-test)")
    watchlist.write_text("rules:\n  - {id: broken, query: '(Zanzibar'}\n")
    daemon.wait_for("config reload rejected")
    found = scrape(base)
    assert found["monitor_config_last_reload_successful"][0].value == 0
    seed(workdir, "reception.md", "# Matsegora hosts reception\n\nAlexander Matsegora spoke.\n")
    daemon.wait_for("Matsegora hosts reception")  # still polling on the last good config
    watchlist.write_text("rules:\n" + RULE.replace("Zanzibar watch", "Zanzibar watch 2"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("config reloaded")
    assert daemon.stop() == 0
    daemon.wait_for("leases released")
