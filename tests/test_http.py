"""/healthz and /metrics on a real loopback server over a real SQLite store."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import metrics
from monitor.domain import Article, Hit, PollOutcome, Rule
from monitor.http import Health, HttpServer, create_app
from monitor.store import Store
from monitor.store.coordination import heartbeat

NOW = datetime.now(UTC)


@pytest.fixture
def server(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.sync_sources([("seeds", "folder", "x")], NOW)
    rule = Rule(id="r1", title="r1", query="x", notify=("console", "ops"))
    article = Article("seeds", "k1", "North Korea", "", None, None, NOW)
    store.save_poll(PollOutcome("seeds", ((article, (Hit(rule),)),)), NOW, lambda h: h.rule.notify)
    heartbeat(store, "host:1:a", "host", 1, "abc123", datetime.now(UTC))  # live now
    http = HttpServer(create_app(Health(store, lambda: "abc123")), "127.0.0.1:0")
    http.start()
    yield f"http://{http.address}"
    http.stop()
    store.close()


def scrape(base: str) -> dict[str, list]:
    text = httpx.get(f"{base}/metrics").text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_parse_and_show_the_outbox(server: str) -> None:
    """/metrics parses with prometheus-client's parser and reports outbox depth per sink."""
    metrics.polls.labels(source="seeds", outcome="ok").inc()
    found = scrape(server)
    assert found["monitor_outbox_depth"][0].value == 2
    pending = {s.labels["sink"]: s.value for s in found["monitor_deliveries"]
               if s.labels["status"] == "pending"}  # fmt: skip
    assert pending == {"console": 1, "ops": 1}
    assert found["monitor_database_up"][0].value == 1
    assert found["monitor_outbox_oldest_age_seconds"][0].value >= 0
    assert found["monitor_replicas"][0].labels == {"config_hash": "abc123"}
    polls = [s for s in found["monitor_polls"] if s.name == "monitor_polls_total"]
    assert any(s.labels == {"source": "seeds", "outcome": "ok"} and s.value >= 1 for s in polls)


def test_healthz_reports_ticks_and_goes_503_when_ticks_stop(server: str) -> None:
    """/healthz is 200 while ticks run and 503 once a tick is older than the stale limit."""
    metrics.last_tick.labels(tick="poll").set(time.time())
    ok = httpx.get(f"{server}/healthz")
    assert ok.status_code == 200 and ok.json()["config_hash"] == "abc123"
    assert ok.json()["database"] == "ok"
    metrics.last_tick.labels(tick="poll").set(time.time() - 3600)
    stale = httpx.get(f"{server}/healthz")
    assert stale.status_code == 503 and stale.json()["status"] == "unhealthy"
    metrics.last_tick.labels(tick="poll").set(time.time())
