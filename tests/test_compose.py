"""docker-compose.yml: parsed by a real compose parser, and its parts line up.

No Docker engine runs here, so the file is checked with Debian's
``docker-compose config`` (it validates and resolves the file) and against the
config the replicas load.
"""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import ROOT
from monitor.config import load_config

COMPOSE = shutil.which("docker-compose")


@pytest.fixture(scope="module")
def compose() -> dict:
    if COMPOSE is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    result = subprocess.run(
        [COMPOSE, "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services(compose: dict) -> None:
    """PostgreSQL, two monitor replicas built from the Dockerfile, and a receiver."""
    services = compose["services"]
    assert set(services) == {"postgres", "monitor-1", "monitor-2", "receiver"}
    for name in ("monitor-1", "monitor-2"):
        assert services[name]["build"]["context"] == str(ROOT)
        assert "postgres" in services[name]["depends_on"]
    assert (ROOT / "Dockerfile").exists()


def test_replicas_share_config_and_database(compose: dict) -> None:
    """Both replicas mount the same config and point at the compose PostgreSQL."""
    one, two = (compose["services"][n] for n in ("monitor-1", "monitor-2"))
    assert one["environment"] == two["environment"] and one["volumes"] == two["volumes"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in one["volumes"]}
    assert mounts["/app/config"] == str(ROOT / "config")
    url = urlsplit(one["environment"]["DATABASE_URL"].replace("+psycopg", ""))
    db = compose["services"]["postgres"]["environment"]
    assert url.hostname == "postgres" and url.port == 5432
    assert (url.username, url.password, url.path.lstrip("/")) == (
        db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"],
    )  # fmt: skip


def test_config_the_replicas_load_is_valid(compose: dict) -> None:
    """The config named by MONITOR_CONFIG loads with the compose environment and sends to the
    receiver service."""
    env = compose["services"]["monitor-1"]["environment"]
    config_file = ROOT / "config" / env["MONITOR_CONFIG"].removeprefix("/app/config/")
    config = load_config(config_file, env=dict(env))
    assert config.database_url == env["DATABASE_URL"]
    receiver = config.sink("receiver")
    assert urlsplit(receiver.url).hostname == "receiver" and receiver.secrets
    port = str(urlsplit(receiver.url).port)
    assert port in [str(p) for p in compose["services"]["receiver"]["expose"]]
