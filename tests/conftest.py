"""Fixtures shared by every test. The network guard is on for all of them:
no test may connect anywhere but loopback (RELIABILITY.md 3.0), and neither may
any process a test starts (tests/childguard/sitecustomize.py, on every child's
PYTHONPATH, writes each refused attempt to a file the guard fixture reads)."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
forbidden_connects: list[Any] = []
_pg_counter = itertools.count()


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths are local by definition
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an unresolved name: a connect to it would leave the machine


# Every child process inherits these: the guard loads in each (tests/childguard).
CHILD_GUARD_LOG = Path(tempfile.mkdtemp(prefix="monitor-netguard-")) / "refused.log"
CHILD_GUARD_LOG.touch()
os.environ["MONITOR_NETGUARD_LOG"] = str(CHILD_GUARD_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT / "tests" / "childguard"), os.environ.get("PYTHONPATH")) if p
)


def child_forbidden_connects() -> list[str]:
    """Every connect a child process was refused in this session, one line each."""
    return CHILD_GUARD_LOG.read_text().splitlines()


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        forbidden_connects.append(address)
        raise ConnectionRefusedError(f"network guard: connect to {address!r} refused in tests")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        forbidden_connects.append(address)
        raise ConnectionRefusedError(f"network guard: connect to {address!r} refused in tests")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def network_guard() -> Iterator[None]:
    """Refuse, and fail the test on, any connection outside 127.0.0.0/8 and ::1."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    before = len(forbidden_connects)
    children_before = len(child_forbidden_connects())
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    tried = forbidden_connects[before:]
    assert not tried, f"test tried to connect outside loopback: {tried}"
    by_children = child_forbidden_connects()[children_before:]
    assert not by_children, f"a child process tried to connect outside loopback: {by_children}"


PG_ADMIN_URL = os.environ.get(
    "MONITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Any]:
    """An admin engine on the local PostgreSQL, or a skip that says why there is none."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as e:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({e.orig}); start it to run these")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: Any) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import text

    name = f"monitor_test_{os.getpid()}_{next(_pg_counter)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitor.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(name="server")
def feed_server() -> Iterator[Any]:
    """A loopback feed server (tests/feedserver.py) for the fetch, feed and full-text tests."""
    from feedserver import FeedServer

    s = FeedServer().start()
    yield s
    s.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the sample config, watchlists and seeds, with its own database."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    # The sample feeds are real public URLs: tests never reach for them (loopback only).
    config = tmp_path / "config" / "monitor.yaml"
    config.write_text(
        re.sub(r"(?ms)^  feeds:\n.*?(?=^  # Folders)", "  feeds: []\n", config.read_text())
    )
    return tmp_path


def run_monitor(*args: str, cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the real ``monitor`` command line in a subprocess."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MONITOR_CONFIG")}
    full_env = {**base, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def daemons() -> Iterator[Any]:
    """Start `monitor run` daemons (tests/faultkit.py) with ``daemons(config, log, env)``;
    every one, and its parse workers, is killed at the end whatever happened."""
    from faultkit import MonitorProcess, stop_all

    started: list[Any] = []

    def start(config: Path, log: Path, env: dict[str, str] | None = None) -> Any:
        started.append(MonitorProcess(config, log, env))
        return started[-1]

    yield start
    stop_all(started)


# --- the reliability suite's report (tests/reliability/casebook.py, issue #7) -------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Set a reliability case's outcome from its test: failed if any phase failed."""
    outcome = yield
    markers = list(item.iter_markers("reliability_case"))  # one test may check several cases
    if not markers:
        return
    from casebook import BOOK

    report = outcome.get_result()
    for marker in markers:
        case = BOOK.cases[marker.args[0]]
        if report.when == "setup":
            BOOK.current = markers[0].args[0]
        if report.failed:
            case.outcome = "failed"
            case.reason = case.reason or str(report.longrepr).strip().splitlines()[-1][:300]
        elif report.skipped:
            case.outcome = "skipped"
            longrepr = report.longrepr
            case.reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        elif report.when == "call" and case.outcome not in ("failed", "skipped"):
            case.outcome = "passed"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """After a run with reliability cases, print the report and write it as JSON."""
    if "casebook" not in sys.modules:
        return
    from casebook import BOOK, print_report, write_json

    if not any(c.outcome != "not run" for c in BOOK.cases.values()):
        return
    from casebook import figure, total

    children = len(child_forbidden_connects())
    figure("safety", "forbidden connects attempted, pytest process", len(forbidden_connects))
    figure("safety", "forbidden connects attempted, child processes", children)
    total("forbidden connects", len(forbidden_connects) + children)
    terminalreporter.section("reliability report")
    print_report(terminalreporter.write_line)
    path = Path(os.environ.get("MONITOR_RELIABILITY_JSON", ROOT / "data" / "reliability.json"))
    write_json(path)
    terminalreporter.write_line(f"written to {path}")
