"""The dashboard in a real browser: headless Chromium loads it from a running server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from webdata import WebData, build

from monitor.domain import utcnow
from monitor.http import Health, HttpServer, create_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (apt-get install -y chromium; .ci/run tries it)",
)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1600",
]  # fmt: skip


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, WebData]]:
    """The daemon's HTTP app (health, metrics and dashboard) on 127.0.0.1."""
    data = build(tmp_path / "db", now=utcnow())  # the daemon's chart ends today
    app = create_app(Health(data.store, lambda: "h", lambda: data.config, "127.0.0.1:0"))
    server = HttpServer(app, "127.0.0.1:0")
    server.start()
    yield f"http://{server.address}", data
    server.stop()
    data.store.close()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_chromium_renders_hits_table_and_chart(
    running: tuple[str, WebData], tmp_path: Path
) -> None:
    """Chromium's rendered DOM has the hit table and the SVG chart, and a screenshot is saved."""
    url, _data = running
    dom = chromium(tmp_path, "--dump-dom", f"{url}/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="hits"' in dom.stdout
    assert '<svg id="hits-chart"' in dom.stdout and 'class="rule-row"' in dom.stdout
    assert "<mark>Matsegora</mark>" in dom.stdout
    assert "<script" not in dom.stdout  # the hostile title stayed text in the live DOM
    png = tmp_path / "hits.png"
    shot = chromium(tmp_path, f"--screenshot={png}", f"{url}/")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_chromium_renders_a_hit_page(running: tuple[str, WebData], tmp_path: Path) -> None:
    """A hit's page renders its marked text, its story and its deliveries in the browser."""
    url, data = running
    dom = chromium(tmp_path, "--dump-dom", f"{url}/hits/{data.summit_hit}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table class="story">' in dom.stdout and '<table class="deliveries">' in dom.stdout
    assert "<mark>summit</mark>" in dom.stdout
