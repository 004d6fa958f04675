"""`monitor deliveries [--failed] [--json]` and `monitor redeliver ID|--failed` (contract 3)."""

from __future__ import annotations

import json
from pathlib import Path

from test_crash import STORIES, setup

from casebook import case, figure
from conftest import run_monitor
from receivers import Reply, running


@case("S14", "fault", "receiver down past the whole schedule: dead, then replayed, same id")
def test_failed_deliveries_are_listed_and_redelivered_with_the_same_id(tmp_path: Path) -> None:
    """A 422 fails every delivery; --failed lists them; redeliver --failed resends the same ids."""
    with running() as receiver:
        receiver.answer("/hook", Reply(422, body=b"nope"))
        config = str(setup(tmp_path, receiver.url()))
        assert run_monitor("run", "--once", "--config", config, cwd=tmp_path).returncode == 0
        listed = run_monitor("deliveries", "--failed", "--json", "--config", config, cwd=tmp_path)
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(rows) == len(STORIES) and {r["status"] for r in rows} == {"failed"}
        assert all("HTTP 422" in r["last_error"] for r in rows)
        table = run_monitor("deliveries", "--config", config, cwd=tmp_path)
        assert table.returncode == 0 and "failed" in table.stdout
        receiver.answer("/hook", Reply(200))
        again = run_monitor("redeliver", "--failed", "--config", config, cwd=tmp_path)
        assert again.returncode == 0 and f"{len(STORIES)} delivery" in again.stdout
        assert run_monitor("run", "--once", "--config", config, cwd=tmp_path).returncode == 0
        ids = [r.webhook_id for r in receiver.requests]
    assert len(ids) == 2 * len(STORIES) and set(ids) == {r["id"] for r in rows}
    replayed = sum(ids.count(r["id"]) == 2 for r in rows)
    figure("dead letters", "monitor redeliver --failed: replays with the original id",
           f"{replayed}/{len(rows)} ({100 * replayed // len(rows)} %)")  # fmt: skip
    unknown = run_monitor("redeliver", "no-such-id", "--config", config, cwd=tmp_path)
    assert unknown.returncode == 2 and "no delivery" in unknown.stderr
