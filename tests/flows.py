"""A small real flow for the delivery tests: a folder, a watchlist, a SQLite file,
sinks pointed at loopback receivers, and a clock the test moves."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.store import Store
from monitor.wiring import build_sinks

START = datetime(2031, 1, 6, 9, 0, tzinfo=UTC)  # after any real file mtime
NEW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes
OLD_SECRET = "an-old-raw-text-secret-of-32-byte"  # raw text, 33 bytes

WATCHLIST = """
rules:
  - id: summit
    title: North Korea–Russia summit
    query: Pyongyang NEAR/S (Putin OR Russia*)
    severity: high
    tags: [korea]
  - id: treaty
    title: Defence treaty
    query: treaty
"""


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Flow:
    root: Path
    pipeline: Pipeline
    store: Store
    clock: Clock
    folders: list[Path] = field(default_factory=list)

    def drop(self, name: str, text: str, folder: int = 0) -> Path:
        """Write a finished seed file (aged past the folder source's quiet period)."""
        path = self.folders[folder] / name
        path.write_text(text)
        old = time.time() - 3600
        os.utime(path, (old, old))
        return path

    def close(self) -> None:
        self.pipeline.close()
        self.store.close()


def make_flow(
    root: Path, sinks: str, *, notify: str = "[ops]", folders: int = 1,
    watchlist: str = WATCHLIST,
) -> Flow:  # fmt: skip
    """``sinks`` is the YAML list of sinks (indented two spaces under ``sinks:``)."""
    (root / "watchlists").mkdir(exist_ok=True)
    (root / "watchlists" / "w.yaml").write_text(watchlist)
    names = [f"outlet{i}" for i in range(folders)]
    for name in names:
        (root / name).mkdir(exist_ok=True)
    folder_yaml = "".join(f"    - {{name: {n}, path: {n}}}\n" for n in names)
    (root / "monitor.yaml").write_text(
        f"database: sqlite:///data/m.db\nsources:\n  folders:\n{folder_yaml}"
        f"sinks:\n{sinks}defaults: {{notify: {notify}}}\n"
    )
    config = load_config(root / "monitor.yaml", env={})
    store = Store(config.database_url, lock=True)
    clock = Clock()
    pipeline = Pipeline(config, store, build_sinks(config), clock=clock)
    return Flow(root, pipeline, store, clock, [root / n for n in names])


def webhook_sink(url: str, name: str = "ops", extra: str = "") -> str:
    return (
        f"  - {{name: {name}, type: webhook, url: '{url}', allow_private_networks: true,\n"
        f"     secret: ['{NEW_SECRET}', '{OLD_SECRET}']{extra}}}\n"
    )


SUMMIT = """# Putin and Kim hold summit in Pyongyang

PYONGYANG, June 19 — Russian President Vladimir Putin and North Korean leader Kim Jong Un held a
summit in Pyongyang on Wednesday, their second meeting in nine months.
After a welcoming ceremony on Kim Il Sung Square, the two leaders held talks, first with their
delegations and then in a smaller format, and signed a number of documents.
"""
