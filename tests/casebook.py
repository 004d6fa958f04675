"""The reliability suite's record (issue #7): each hostile input and fault case, and figures.

A test that checks a row of RELIABILITY.md marks itself with ``@case(...)``:
tests of the regular suite (tests/test_fetch.py ...) as well as the heavier
ones in tests/reliability/, whose modules carry ``pytestmark =
pytest.mark.reliability`` so that ``make test`` leaves them out. ``make
reliability`` runs every marked test; the hooks in tests/conftest.py set each
case's outcome from its test's result, and at the end of the run print the
report of RELIABILITY.md 3(c) and write it as JSON.
A test adds what it measured with ``measured(...)`` (per case) and
``figure(...)`` (report sections: loss, retry, replicas, resources, ...).
"""

from __future__ import annotations

import json
import platform
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

CATEGORIES = ("http", "content", "folder", "config", "fault")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Case:
    id: str  # the row of RELIABILITY.md 3(a)/3(b): H1, F2, L7, C3, S14 ...
    category: str
    title: str
    must_pass: bool
    outcome: str = "not run"  # passed, failed, skipped, not run
    reason: str = ""  # why it failed or was skipped
    wall_s: float | None = None
    deadline_s: float | None = None
    peak_rss_mib: float | None = None
    rss_cap_mib: float | None = None
    bytes_read: int | None = None
    byte_cap: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Casebook:
    cases: dict[str, Case] = field(default_factory=dict)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Counts summed over the whole run for the report's headline (lost hits, crashes ...).
    totals: dict[str, float] = field(default_factory=dict)
    current: str | None = None  # the case whose test is running

    def to_json(self) -> dict[str, Any]:
        return {
            "versions": versions(),
            "cases": [asdict(c) for c in self.cases.values()],
            "figures": self.figures,
            "totals": self.totals,
        }


BOOK = Casebook()


def case(case_id: str, category: str, title: str, *, must_pass: bool = True) -> Callable[[F], F]:
    """Mark a test as the check of one case of RELIABILITY.md."""
    marker = case_mark(case_id, category, title, must_pass=must_pass)

    def mark(test: F) -> F:
        return marker(test)  # type: ignore[no-any-return]

    return mark


def case_mark(
    case_id: str, category: str, title: str, *, must_pass: bool = True
) -> pytest.MarkDecorator:
    """The same mark for one parameter of a test: ``pytest.param(..., marks=case_mark(...))``."""
    assert category in CATEGORIES, category
    BOOK.cases.setdefault(case_id, Case(case_id, category, title, must_pass))
    return pytest.mark.reliability_case(case_id)


def repetitions(config: pytest.Config, *, fast: int, full: int) -> int:
    """How often a scenario repeats (RELIABILITY 3(c) 3: R >= 10 where cheap): once in
    `make test`, ``fast`` times in `make reliability-fast`, ``full`` in `make reliability`."""
    expression = str(config.getoption("markexpr") or "")
    if "reliability_case" not in expression:
        return 1
    return fast if "not slow" in expression else full


def measured(case_id: str | None = None, **values: Any) -> None:
    """Attach measurements (wall_s, peak_rss_mib, bytes_read, ... or notes) to a case."""
    target = BOOK.cases[case_id or BOOK.current or ""]
    for name, value in values.items():
        if hasattr(target, name) and name not in ("id", "category", "title", "must_pass"):
            setattr(target, name, value)
        else:
            target.notes[name] = value


def total(name: str, value: float) -> None:
    """Add to one of the headline's run-wide counts (see ``HEADLINE``)."""
    BOOK.totals[name] = BOOK.totals.get(name, 0) + value


# The headline's counts, in the order RELIABILITY.md 3(c) and issue #7 name them.
HEADLINE = ("daemon crashes", "exceptions past the per-feed boundary", "lost hits",
            "missing deliveries", "duplicate receptions", "forbidden connects")  # fmt: skip


def figure(section: str, name: str, value: Any) -> None:
    """One figure of a report section (RELIABILITY.md 3(c) 2-11)."""
    BOOK.figures.setdefault(section, {})[name] = value


def peak_rss_mib(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import feedparser
    import httpx

    found = {
        "python": platform.python_version(),
        "feedparser": feedparser.__version__,
        "httpx": httpx.__version__,
        "expat": __import__("pyexpat").EXPAT_VERSION,
        "sqlite": sqlite3.sqlite_version,
        "nh3": version("nh3"),
    }
    try:
        found["postgresql"] = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found["postgresql"] = "not found"
    try:
        root = Path(__file__).resolve().parents[1]
        found["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
            timeout=5,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        found["git"] = "unknown"
    return found


def write_json(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(BOOK.to_json(), indent=2, default=str))


def print_report(write: Callable[[str], None]) -> None:
    """The report of RELIABILITY.md 3(c), as plain text lines (the hooks print it)."""
    v = versions()
    write("monitor reliability report  " + "  ".join(f"{k} {val}" for k, val in v.items()))
    run = [c for c in BOOK.cases.values() if c.outcome != "not run"]
    must = [c for c in run if c.must_pass]
    for category in CATEGORIES:
        tried = [c for c in run if c.category == category]
        if tried:
            passed = sum(c.outcome == "passed" for c in tried)
            write(f"  {category:8} tried {len(tried):3}  passed {passed:3}")
    must_passed = sum(c.outcome == "passed" for c in must)
    write(f"  must-pass: {must_passed}/{len(must)} passed")
    _write_headline(run, write)
    for c in run:
        if c.outcome != "passed":
            write(f"  {c.id:5} {c.outcome:8} {c.title}: {c.reason}")
    _write_measurements(run, write)
    for section, values in BOOK.figures.items():
        write(f"  [{section}]")
        for name, value in values.items():
            write(f"    {name:50} {value}")


def _write_headline(run: list[Case], write: Callable[[str], None]) -> None:
    """One line a person reads first: the must-pass hostile inputs and the zero counts."""
    hostile = [c for c in run if c.must_pass and c.category != "fault"]
    faults = [c for c in run if c.category == "fault"]
    parts = [
        f"hostile inputs must-pass {sum(c.outcome == 'passed' for c in hostile)}/{len(hostile)}",
        f"fault scenarios {sum(c.outcome == 'passed' for c in faults)}/{len(faults)}",
    ]
    totals = BOOK.totals
    for name in HEADLINE:
        if name in totals:
            parts.append(f"{name} {totals[name]:g}")
    duplicates = totals.get("duplicate receptions", 0)
    if duplicates:
        same = 100 * (duplicates - totals.get("duplicates with another id", 0)) / duplicates
        parts.append(f"duplicates with the same webhook-id {same:.0f} %")
    write("  headline: " + "; ".join(parts))


def _write_measurements(run: list[Case], write: Callable[[str], None]) -> None:
    """3(c) 1: per case, wall time against its deadline, peak RSS and bytes read against caps."""
    rows = []
    for c in run:
        parts = [
            _against("wall", c.wall_s, c.deadline_s, "s"),
            _against("peak RSS", c.peak_rss_mib, c.rss_cap_mib, "MiB"),
            _against("read", c.bytes_read, c.byte_cap, "B"),
        ]
        if any(parts):
            rows.append(f"    {c.id:5} " + "  ".join(p for p in parts if p))
    if rows:
        write("  [per case: measured / bound]")
        for row in rows:
            write(row)


def _against(label: str, value: float | None, bound: float | None, unit: str) -> str:
    if value is None:
        return ""

    def shown(x: float) -> str:
        return f"{x:,}" if isinstance(x, int) else f"{x:g}"

    return (
        f"{label} {shown(value)}" + (f" / {shown(bound)}" if bound is not None else "") + f" {unit}"
    )


def running_under_pytest() -> bool:
    return "pytest" in sys.modules
