"""G14: a killed `monitor run` loses no hit and no delivery; a resend carries the same
webhook-id. Real subprocesses, a real SQLite file, a real receiver on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_monitor
from flows import NEW_SECRET
from monitor.store import Store
from receivers import Receiver, Reply, running

STORIES = [  # five different stories (no near-duplicates), each matching the rule
    "Pyongyang hosts Russian trade fair",
    "Shoigu lands in Pyongyang for defence talks",
    "Lavrov and Choe meet in Pyongyang on sanctions",
    "Putin invites Kim to Moscow after Pyongyang visit",
    "Russian orchestra tours Pyongyang for the first time",
]


def setup(root: Path, url: str) -> Path:
    (root / "inbox").mkdir()
    (root / "watchlists").mkdir()
    (root / "watchlists" / "w.yaml").write_text("rules:\n  - {id: nk, query: Pyongyang}\n")
    old = time.time() - 3600
    for n, title in enumerate(STORIES):
        path = root / "inbox" / f"s{n}.txt"
        path.write_text(f"{title}\n{' '.join(title.split()[::-1])} story number {n} of {n * 7}.\n")
        os.utime(path, (old, old))
    (root / "monitor.yaml").write_text(
        "database: sqlite:///m.db\nsources:\n  folders:\n    - {name: inbox, path: inbox}\n"
        f"sinks:\n  - {{name: ops, type: webhook, url: '{url}', secret: '{NEW_SECRET}',"
        " allow_private_networks: true}\ndefaults: {notify: [ops]}\n"
    )
    return root / "monitor.yaml"


def outcome(root: Path, receiver: Receiver) -> tuple[set[str], Counter[str], int]:
    store = Store(f"sqlite:///{root / 'm.db'}")
    try:
        expected = {d.id for d in store.deliveries()}
        hits = len(store.hits())
    finally:
        store.close()
    return expected, Counter(r.webhook_id for r in receiver.requests), hits


# after_fetch needs a feed; these points are on every source's path.
@pytest.mark.parametrize("point", ["before_commit", "after_commit", "after_send_before_record"])
def test_crash_at_each_point_loses_nothing(tmp_path: Path, point: str) -> None:
    """`MONITOR_CRASH_AT=<point>` kills `monitor run --once` (exit 137); a restart delivers
    every expected id, duplicates only with the same id, at most one per crash, no hit lost."""
    with running() as receiver:
        config = setup(tmp_path, receiver.url())
        crashed = run_monitor("run", "--once", "--config", str(config), cwd=tmp_path,
                              env={"MONITOR_CRASH_AT": point})  # fmt: skip
        assert crashed.returncode == 137, crashed.stderr
        again = run_monitor("run", "--once", "--config", str(config), cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        expected, received, hits = outcome(tmp_path, receiver)
    assert hits == len(STORIES) and len(expected) == len(STORIES)
    assert set(received) == expected  # every expected delivery id arrived, no other id
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates == (1 if point == "after_send_before_record" else 0)


def test_kill_9_mid_send_redelivers_with_the_same_id(tmp_path: Path) -> None:
    """A real SIGKILL while the receiver holds a request: the restart resends that id."""
    release = threading.Event()
    with running() as receiver:
        receiver.answer("/hook", Reply(hold=release), Reply(200))
        config = setup(tmp_path, receiver.url())
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MONITOR_CONFIG")}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert receiver.wait_for(1, timeout=60)  # the first send is in flight, held
        finally:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
        release.set()
        again = run_monitor("run", "--once", "--config", str(config), cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        expected, received, hits = outcome(tmp_path, receiver)
    assert hits == len(STORIES)
    assert set(received) == expected and len(expected) == len(STORIES)
    assert sum(n - 1 for n in received.values()) <= 1
