"""The whole flow on a real folder, a real SQLite file, real spaCy and the console sink."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from hostile_rows import row

from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.sinks.console import ConsoleSink
from monitor.store import Store

WATCHLIST = """
entities:
  - {id: matsegora, name: Alexander Matsegora, aliases: [Matsegora]}
rules:
  - id: ambassador
    title: Ambassador Matsegora
    query: entity:matsegora
    severity: high
  - id: summit
    title: Summit in Pyongyang
    query: Pyongyang NEAR/S summit*
"""

ARTICLE = """# Envoy meets officials in Pyongyang

Russian ambassador Alexander Matsegora met officials on Monday.
Preparations for a summit in Pyongyang were discussed, diplomats said.
"""


def settle(path: Path) -> Path:
    """Age a file past the quiet period, as if its writer finished long ago."""
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


@pytest.fixture
def flow(tmp_path: Path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.yaml").write_text(WATCHLIST)
    (tmp_path / "monitor.yaml").write_text(
        "database: sqlite:///data/m.db\nsources:\n  folders:\n    - {name: inbox, path: inbox}\n"
    )
    config = load_config(tmp_path / "monitor.yaml", env={})
    store = Store(config.database_url, lock=True)
    out = io.StringIO()
    pipeline = Pipeline(config, store, {"console": ConsoleSink(file=out)})
    yield pipeline, folder, out
    store.close()


def test_seed_file_to_console_alert(flow) -> None:
    """A new file becomes an article, two hits, two deliveries, and two console alerts."""
    pipeline, folder, out = flow
    settle(_write(folder / "envoy.md", ARTICLE))
    (summary,) = pipeline.poll_all()
    assert (summary.new_articles, summary.hits, summary.error) == (1, 2, None)
    report = pipeline.deliver_due()
    assert report.delivered == 2
    printed = out.getvalue()
    assert "Ambassador Matsegora" in printed and "Summit in Pyongyang" in printed
    assert "Envoy meets officials in Pyongyang" in printed and "inbox" in printed
    assert "Russian ambassador **Alexander Matsegora** met officials on Monday." in printed


def test_second_poll_alerts_nothing(flow) -> None:
    """Polling an unchanged folder again stores and prints nothing new."""
    pipeline, folder, out = flow
    settle(_write(folder / "envoy.md", ARTICLE))
    pipeline.poll_all()
    pipeline.deliver_due()
    before = out.getvalue()
    (summary,) = pipeline.poll_all()
    assert summary.new_articles == 0
    assert pipeline.deliver_due().delivered == 0
    assert out.getvalue() == before


def test_same_content_in_a_new_file_is_not_a_new_article(flow) -> None:
    """One article per content: a copy of a file under another name alerts nothing."""
    pipeline, folder, _ = flow
    settle(_write(folder / "envoy.md", ARTICLE))
    pipeline.poll_all()
    settle(_write(folder / "copy.md", ARTICLE))
    (summary,) = pipeline.poll_all()
    assert summary.new_articles == 0


def test_edited_file_is_a_new_article(flow) -> None:
    """Editing a file's content makes a new article (and its own hits)."""
    pipeline, folder, _ = flow
    path = settle(_write(folder / "envoy.md", ARTICLE))
    pipeline.poll_all()
    settle(_write(path, ARTICLE + "\nMatsegora later left for Moscow.\n"))
    (summary,) = pipeline.poll_all()
    assert summary.new_articles == 1 and summary.hits == 2


@row("L3")
def test_bad_files_never_stop_the_others(flow) -> None:
    """Binary, oversized and FIFO files are skipped; the good file is still ingested."""
    pipeline, folder, _ = flow
    settle(_write(folder / "good.md", ARTICLE))
    settle(_write(folder / "binary.txt", "\x00" * 4096, mode="wb"))
    huge = folder / "huge.txt"
    huge.touch()
    os.truncate(huge, 2 * 1024**3)  # sparse: costs nothing unless somebody reads it
    settle(huge)
    os.mkfifo(folder / "news.txt")
    (summary,) = pipeline.poll_all()
    assert summary.new_articles == 1 and summary.error is None


def test_half_written_file_waits_for_quiet(flow) -> None:
    """A file modified just now is not read until its writer has been quiet for a while."""
    pipeline, folder, _ = flow
    _write(folder / "fresh.md", ARTICLE)  # mtime is now: still being written, perhaps
    (summary,) = pipeline.poll_due()
    assert summary.new_articles == 0 and summary.waiting
    settle(folder / "fresh.md")
    assert sum(s.new_articles for s in pipeline.poll_all()) == 1


def _write(path: Path, text: str, mode: str = "w") -> Path:
    if mode == "wb":
        path.write_bytes(text.encode("latin-1"))
    else:
        path.write_text(text)
    return path
