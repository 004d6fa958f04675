"""Hot reload on real files: valid changes applied, invalid ones rejected once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from monitor import metrics
from monitor.config import Config, load_config
from monitor.reload import ConfigWatcher

RULES = "rules:\n  - {id: r1, query: Korea}\n"


def reload_ok() -> float | None:
    return metrics.REGISTRY.get_sample_value("monitor_config_last_reload_successful")


def bump(path: Path, text: str) -> None:
    """Write ``text`` and move the mtime forward, as a later edit would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def setup(tmp_path: Path):
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text(RULES)
    (tmp_path / "monitor.yaml").write_text("{}\n")
    applied: list[Config] = []
    config = load_config(tmp_path / "monitor.yaml")
    return tmp_path, ConfigWatcher(tmp_path / "monitor.yaml", config, applied.append), applied


def test_unchanged_files_do_nothing(setup) -> None:
    """No change, no reload."""
    _, watcher, applied = setup
    assert watcher.check() is False and applied == []


def test_valid_watchlist_change_is_applied(setup) -> None:
    """A new rule in a watchlist is validated and swapped in."""
    path, watcher, applied = setup
    bump(path / "watchlists" / "w.yaml", RULES + "  - {id: r2, query: Japan}\n")
    assert watcher.check() is True
    assert [r.id for r in applied[0].rules] == ["r1", "r2"]
    assert reload_ok() == 1


def test_new_watchlist_file_is_noticed(setup) -> None:
    """A watchlist file added to the folder is picked up."""
    path, watcher, applied = setup
    bump(path / "watchlists" / "more.yaml", "rules:\n  - {id: r9, query: Seoul}\n")
    assert watcher.check() is True and "r9" in {r.id for r in applied[0].rules}


@pytest.mark.parametrize("bad", ["rules: [\n", "rules:\n  - {id: r1, query: '(Korea'}\n"])
def test_invalid_change_is_rejected_and_logged_once(setup, bad: str, caplog) -> None:
    """Bad YAML or a bad query: old config kept, errors logged once, gauge 0; a fix applies."""
    path, watcher, applied = setup
    caplog.set_level(logging.ERROR, logger="monitor.reload")
    bump(path / "watchlists" / "w.yaml", bad)
    assert watcher.check() is False and watcher.check() is False
    assert applied == [] and reload_ok() == 0
    assert len([r for r in caplog.records if "errors=" in r.getMessage()]) == 1
    bump(path / "watchlists" / "w.yaml", RULES + "  - {id: r3, query: China}\n")
    assert watcher.check() is True and reload_ok() == 1


def test_atomic_rename_is_noticed(setup) -> None:
    """A config replaced by rename (editors, config management) is reloaded."""
    path, watcher, applied = setup
    tmp = path / "monitor.yaml.new"
    tmp.write_text("defaults: {interval: 5m}\n")
    os.utime(tmp, ns=(1, 1))
    os.replace(tmp, path / "monitor.yaml")
    assert watcher.check() is True and applied[0].interval.total_seconds() == 300


def test_sighup_forces_a_check(setup) -> None:
    """force=True reloads even when no stat changed (SIGHUP), applying nothing if equal."""
    _, watcher, applied = setup
    assert watcher.check(force=True) is False and applied == []
