"""Plumbing check for the reliability report (replaced by the real config cases)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from casebook import case, measured
from conftest import run_monitor

pytestmark = pytest.mark.reliability


@case("C1", "config", "invalid YAML at start-up: exit != 0 before the DB, with file:line:col")
def test_invalid_yaml_at_startup(tmp_path: Path) -> None:
    """`monitor run` on broken YAML exits 2 naming the place, and creates no database."""
    (tmp_path / "monitor.yaml").write_text("database: sqlite:///m.db\nsources: [\n")
    started = time.monotonic()
    result = run_monitor("run", "--once", "--config", str(tmp_path / "monitor.yaml"), cwd=tmp_path)
    measured(wall_s=round(time.monotonic() - started, 2))
    assert result.returncode == 2
    assert "monitor.yaml" in result.stderr and "line" in result.stderr
    assert not (tmp_path / "m.db").exists()
