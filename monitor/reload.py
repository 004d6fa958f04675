"""Hot reload: notice a changed config or watchlist, validate it in full, swap it in.

A change is noticed by polling the stat of every YAML file under the config's
folder (cheap, and it sees atomic renames and in-place writes alike) or by
SIGHUP. An invalid new config is rejected: its errors are logged once per
change, ``monitor_config_last_reload_successful`` drops to 0, and the daemon
runs on with the last good config (G11, as Alertmanager and Prometheus do).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from monitor import metrics
from monitor.config import Config, load_config
from monitor.errors import ConfigError

log = logging.getLogger("monitor.reload")
Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(config_path: Path) -> Fingerprint:
    """(path, mtime_ns, size) of the config file and every YAML file beside or below it."""
    paths = {config_path}
    for root, _dirs, files in os.walk(config_path.parent):
        paths.update(Path(root, f) for f in files if f.endswith((".yaml", ".yml")))
    found = []
    for path in sorted(paths):
        try:
            st = path.stat()
        except OSError:
            continue  # deleted between listing and stat: the next check sees it gone
        found.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(found)


class ConfigWatcher:
    """Calls ``apply(new_config)`` when the files change and the new config is valid."""

    def __init__(self, path: Path, current: Config, apply: Callable[[Config], None]):
        self.path = path
        self.current = current
        self.apply = apply
        self.last = fingerprint(path)
        metrics.config_reload_successful.set(1)
        metrics.config_reload_timestamp.set(time.time())
        metrics.config_info.labels(hash=current.digest).set(1)

    def check(self, *, force: bool = False) -> bool:
        """Reload if something changed (or ``force``, for SIGHUP); True if a config was applied."""
        now = fingerprint(self.path)
        if now == self.last and not force:
            return False
        self.last = now
        try:
            config = load_config(self.path)
        except ConfigError as e:
            metrics.config_reload_successful.set(0)
            for problem in e.problems:
                log.error("config reload rejected problem=%r", str(problem))
            log.error("config reload rejected errors=%d keeping=%s", len(e.problems),
                      self.current.digest)  # fmt: skip
            return False
        metrics.config_reload_successful.set(1)
        if config.digest == self.current.digest:
            return False  # touched or rewritten with the same content
        self.apply(config)
        metrics.config_info.remove(self.current.digest)
        metrics.config_info.labels(hash=config.digest).set(1)
        metrics.config_reload_timestamp.set(time.time())
        log.info("config reloaded old=%s new=%s rules=%d", self.current.digest, config.digest,
                 len(config.rules))  # fmt: skip
        self.current = config
        return True
