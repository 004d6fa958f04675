"""G14: a killed `monitor run` loses no hit and no delivery; a resend carries the same
webhook-id. Real subprocesses, a real SQLite file, a real receiver on 127.0.0.1 and a
loopback feed. RELIABILITY S1-S3: each crash point is repeated R times in the reliability
suite (once in `make test`), and the loss and duplicate figures go to its report."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer, item, rss

from casebook import case_mark, repetitions
from conftest import run_monitor
from faultkit import partial_rows, tally
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


FEED_ITEMS = 3  # the feed's items, each matching the rule too


def feed_body() -> bytes:
    items = []
    for n in range(FEED_ITEMS):
        words = " ".join(hashlib.sha256(f"{n}-{k}".encode()).hexdigest()[:8] for k in range(12))
        items.append(item(n, title=f"Pyongyang wire {n}", link=f"https://wire.example/{n}",
                          description=f"<p>{words}</p>"))  # fmt: skip
    return rss(items)


@pytest.fixture
def wire() -> Iterator[str]:
    """A loopback feed of FEED_ITEMS matching items (the after_fetch point is on its path)."""
    server = FeedServer().start()
    body = feed_body()
    server.routes["/wire.xml"] = lambda request: request.send(200, body)
    yield server.url("/wire.xml")
    server.stop()


def setup(root: Path, url: str, feed: str | None = None) -> Path:
    (root / "inbox").mkdir()
    (root / "watchlists").mkdir()
    (root / "watchlists" / "w.yaml").write_text("rules:\n  - {id: nk, query: Pyongyang}\n")
    old = time.time() - 3600
    for n, title in enumerate(STORIES):
        path = root / "inbox" / f"s{n}.txt"
        path.write_text(f"{title}\n{' '.join(title.split()[::-1])} story number {n} of {n * 7}.\n")
        os.utime(path, (old, old))
    feeds = f"  feeds:\n    - {{name: wire, url: '{feed}'}}\n" if feed else ""
    (root / "monitor.yaml").write_text(
        "database: sqlite:///m.db\nsources:\n  folders:\n    - {name: inbox, path: inbox}\n"
        f"{feeds}fetch: {{allow_private_networks: true}}\n"
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


S1 = "kill -9 mid-poll (after fetch / before commit): no partial rows, no lost hit"
S2 = "kill -9 after commit, before any send: every delivery is sent after restart"
S3 = "kill -9 after the send, before it is recorded: redelivered with the same webhook-id"


def record(scenario: str, root: Path, receiver: Receiver, crashes: int, feed: bool = True) -> None:
    """Add one run to the loss figures (RELIABILITY 3(c) 3); no partial rows were left."""
    assert partial_rows(f"sqlite:///{root / 'm.db'}", matching="%Pyongyang%") == 0
    store = Store(f"sqlite:///{root / 'm.db'}")
    try:
        expected_ids = {d.id for d in store.deliveries()}
        stored = [h.title for h in store.hits()]
    finally:
        store.close()
    expected = set(STORIES) | {f"Pyongyang wire {n}" for n in range(FEED_ITEMS) if feed}
    received = [(r.webhook_id, r.json["article"]["title"]) for r in receiver.requests]
    tally(scenario, expected_hits=expected, stored_hits=stored, expected_ids=expected_ids,
          received=received, crashes=crashes)  # fmt: skip


@pytest.mark.parametrize(
    ("point", "scenario"),
    [
        pytest.param("after_fetch", "S1", marks=case_mark("S1", "fault", S1)),
        pytest.param("before_commit", "S1", marks=case_mark("S1", "fault", S1)),
        pytest.param("after_commit", "S2", marks=case_mark("S2", "fault", S2)),
        pytest.param("after_send_before_record", "S3", marks=case_mark("S3", "fault", S3)),
    ],
)
def test_crash_at_each_point_loses_nothing(
    tmp_path: Path, wire: str, point: str, scenario: str, request: pytest.FixtureRequest
) -> None:
    """`MONITOR_CRASH_AT=<point>` kills `monitor run --once` (exit 137); a restart delivers
    every expected id, duplicates only with the same id, at most one per crash, no hit lost."""
    for rep in range(repetitions(request.config, fast=1, full=10)):
        root = tmp_path / f"run{rep}"
        root.mkdir()
        with running() as receiver:
            config = setup(root, receiver.url(), wire)
            crashed = run_monitor("run", "--once", "--config", str(config), cwd=root,
                                  env={"MONITOR_CRASH_AT": point})  # fmt: skip
            assert crashed.returncode == 137, crashed.stderr
            again = run_monitor("run", "--once", "--config", str(config), cwd=root)
            assert again.returncode == 0, again.stderr
            expected, received, hits = outcome(root, receiver)
            record(scenario, root, receiver, crashes=1)
        assert hits == len(STORIES) + FEED_ITEMS and len(expected) == hits
        assert set(received) == expected  # every expected delivery id arrived, no other id
        duplicates = sum(n - 1 for n in received.values())
        assert duplicates == (1 if point == "after_send_before_record" else 0)


@case_mark("S3", "fault", S3)
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
        record("S3", tmp_path, receiver, crashes=1, feed=False)
    assert hits == len(STORIES)
    assert set(received) == expected and len(expected) == len(STORIES)
    assert sum(n - 1 for n in received.values()) <= 1
