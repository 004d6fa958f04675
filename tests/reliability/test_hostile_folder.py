"""RELIABILITY.md 3(a), watched-folder rows, through the real pipeline (folder source, SQLite,
matcher, outbox). The scanner-level checks of L1-L9 are in tests/test_folder.py under the
same case ids; here are the pipeline-level ones: a slow writer (L1), a symlink to a
sentinel file (L4), 10,000 files at once (L7) and re-saves (L8).

Time is the flow's injected clock; file mtimes are set from it, so nothing sleeps.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import capture_logs, record_sentinel_check
from hostile_rows import row
from sqlalchemy import text

from casebook import measured
from flows import Flow, make_flow

pytestmark = pytest.mark.reliability

CONSOLE = "  - {name: console, type: console}\n"
WATCHLIST = "rules:\n  - {id: zanzibar, query: Zanzibar}\n"


@pytest.fixture
def flow(tmp_path: Path) -> Iterator[Flow]:
    made = make_flow(tmp_path, CONSOLE, notify="[console]", watchlist=WATCHLIST)
    yield made
    made.close()


def at(path: Path, flow: Flow, ago: float = 0.0) -> None:
    """Stamp ``path`` with the flow clock's time (minus ``ago`` seconds), as its writer would."""
    stamp = flow.clock.now.timestamp() - ago
    os.utime(path, (stamp, stamp))


def stored(flow: Flow) -> list[tuple[str, str]]:
    with flow.store.reading() as s:
        return [tuple(r) for r in s.execute(text("SELECT title, body FROM articles")).all()]


@row("L1")
def test_l1_slowly_written_file_is_ingested_once_complete(flow: Flow) -> None:
    """L1: a file written in 10 chunks, 0.5 s apart, is left alone while it grows and then
    ingested once, whole, after the quiet period; later polls add nothing."""
    path = flow.folders[0] / "slow.txt"
    chunks = ["Zanzibar port reopens\n", *(f"paragraph {n} of the report.\n" for n in range(9))]
    waiting_polls = 0
    for chunk in chunks:
        with path.open("a") as f:
            f.write(chunk)
        at(path, flow)
        (summary,) = flow.pipeline.poll_all(settle_seconds=0)
        assert summary.new_articles == 0  # never half a file
        waiting_polls += bool(summary.waiting)
        flow.clock.advance(seconds=0.5)
    polls = []
    for _ in range(4):  # the quiet period (1 s) passes
        flow.clock.advance(seconds=0.5)
        polls.append(flow.pipeline.poll_all(settle_seconds=0)[0])
    assert sum(p.new_articles for p in polls) == 1 and sum(p.hits for p in polls) == 1
    ((title, body),) = stored(flow)
    assert title == "Zanzibar port reopens" and body.count("paragraph") == 9
    measured(chunks=len(chunks), polls_while_writing=len(chunks), waiting_polls=waiting_polls)


@row("L4")
def test_l4_symlinks_out_of_the_folder_and_loops_are_not_followed(
    flow: Flow, tmp_path: Path
) -> None:
    """L4: a symlink to a sentinel file outside the folder and a symlink loop are skipped and
    logged once each, on one line; the sentinel's content is in no row, alert or log; the
    good file beside them is ingested."""
    folder = flow.folders[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SENTINEL-L4-77ab\nZanzibar secret body")
    (folder / "leak.txt").symlink_to(outside / "secret.txt")
    (folder / "a.txt").symlink_to("b.txt")
    (folder / "b.txt").symlink_to("a.txt")
    flow.drop("good.txt", "Zanzibar harbour news\nThe port reopened.")
    with capture_logs() as logs:
        (summary,) = flow.pipeline.poll_all(settle_seconds=0)
        flow.pipeline.deliver_due()
    assert summary.error is None and summary.new_articles == 1
    skipped = [line for line in logs if "file skipped" in line]
    assert sum("reason=symlink_outside" in line for line in skipped) == 1
    assert sum("reason=symlink_loop" in line for line in skipped) == 2
    assert all("\n" not in line for line in skipped)
    with flow.store.reading() as s:
        everything = " ".join(
            str(value) for table in ("articles", "hits", "deliveries")
            for r in s.execute(text(f"SELECT * FROM {table}")).all() for value in r
        )  # fmt: skip
    leaks = sum("SENTINEL-L4" in t for t in (everything, *logs))
    record_sentinel_check(leaks)
    assert leaks == 0


@row("L7")
def test_l7_ten_thousand_files_at_once_are_each_ingested_once(flow: Flow) -> None:
    """L7: 10,000 files dropped at once are all ingested by the full scan, each exactly once;
    the next poll adds nothing."""
    folder, count = flow.folders[0], 10_000
    for n in range(count):
        topic = "Zanzibar" if n % 100 == 0 else "Harbour"
        # Distinct words per file: templated near-twins would be one story each, and time the
        # near-duplicate index (stories.py) rather than the folder source.
        words = " ".join(hashlib.sha256(f"{n}-{k}".encode()).hexdigest()[:8] for k in range(12))
        path = folder / f"drop-{n:05}.txt"
        path.write_text(f"{topic} dispatch {n}\n{words}\n")
        at(path, flow, ago=60)
    started = time.monotonic()
    (first,) = flow.pipeline.poll_all(settle_seconds=0)
    wall = time.monotonic() - started
    flow.clock.advance(seconds=2)
    (second,) = flow.pipeline.poll_all(settle_seconds=0)
    with flow.store.reading() as s:
        rows, keys = s.execute(
            text("SELECT count(*), count(DISTINCT item_key) FROM articles")
        ).one()  # fmt: skip
    assert (first.new_articles, first.hits, first.error) == (count, count // 100, None)
    assert (rows, keys) == (count, count)
    assert (second.new_articles, second.hits) == (0, 0)
    measured(wall_s=round(wall, 2), files=count, per_file_ms=round(wall / count * 1000, 2))


@row("L8")
def test_l8_resaved_and_touched_file_adds_nothing(flow: Flow) -> None:
    """L8: the same content re-saved 5 times, then only touched, makes no new item or alert."""
    path = flow.drop("same.txt", "Zanzibar notice\nUnchanged body.")
    assert flow.pipeline.poll_all(settle_seconds=0)[0].new_articles == 1
    for n in range(6):
        if n < 5:
            path.write_text("Zanzibar notice\nUnchanged body.")  # a re-save: new inode or mtime
        at(path, flow, ago=60 - n)  # touched: a newer mtime each time
        flow.clock.advance(seconds=2)
        (summary,) = flow.pipeline.poll_all(settle_seconds=0)
        assert (summary.new_articles, summary.hits) == (0, 0)
    assert len(stored(flow)) == 1
