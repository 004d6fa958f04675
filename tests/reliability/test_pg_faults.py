"""PostgreSQL faults (RELIABILITY S6, S7): a server restarted with ``-m immediate`` under
load, and a server unreachable behind a loopback TCP proxy. A real `monitor run` daemon
polls growing loopback feeds and delivers throughout; afterwards every matching item is
stored once and delivered (duplicates only with the same webhook-id).

S6 restarts a private cluster (initdb in a temp directory, its own port on 127.0.0.1)
rather than the machine's shared one: an immediate restart of the shared cluster would
break every other PostgreSQL test running at the same time on this machine."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer, GrowingFeeds

from casebook import case, figure, measured, repetitions
from faultkit import TimedReceiver, eventually, feed_config, feeds_of, free_port, settle, tally

pytestmark = pytest.mark.reliability

FEEDS, PERIOD = 5, 2.0
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))


@pytest.fixture
def feeds() -> Iterator[GrowingFeeds]:
    server = FeedServer().start()
    yield GrowingFeeds(server, FEEDS, PERIOD)
    server.stop()


@pytest.fixture
def receiver() -> Iterator[TimedReceiver]:
    r = TimedReceiver().start()
    yield r
    r.stop()


class Cluster:
    """A throwaway PostgreSQL cluster owned by the ``postgres`` user, on 127.0.0.1:port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        shutil.chown(self.dir, "postgres")

    def pg(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir)  # fmt: skip

    def start(self) -> None:
        init = self.pg(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                       "-U", "postgres", "--no-sync")  # fmt: skip
        if init.returncode != 0:
            pytest.skip(f"cannot initdb a private PostgreSQL cluster: {init.stderr.strip()}")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
                   " -c fsync=off -c max_connections=50")  # fmt: skip
        started = self.pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
                          "-l", str(self.dir / "log"), "-w", "start")  # fmt: skip
        if started.returncode != 0:
            pytest.skip(f"cannot start a private PostgreSQL cluster: {started.stderr.strip()}")

    def restart_immediate(self) -> None:
        """`pg_ctl restart -m immediate`: every backend killed, no checkpoint, crash recovery."""
        done = self.pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "-l", str(self.dir / "log"), "-w", "restart")  # fmt: skip
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        self.pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private cluster, always stopped and removed at the end (even if the test failed)."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip(f"no PostgreSQL server binaries at {PG_BIN} (initdb, pg_ctl) or runuser")
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


@case("S6", "fault", "PostgreSQL restarted (-m immediate) under load: reconnect, retry, no loss")
def test_postgresql_restarts_under_load_lose_nothing(
    cluster: Cluster, feeds: GrowingFeeds, receiver: TimedReceiver, tmp_path: Path, daemons,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """The server is restarted with `-m immediate` every few seconds while the daemon polls
    and delivers: the daemon stays up, reconnects (pre-ping), retries what was interrupted;
    no hit is lost or doubled; duplicates only with the same webhook-id."""
    restarts = repetitions(request.config, fast=3, full=10)
    every = 5.0 if restarts <= 3 else 30.0  # slow: every 30 s for 5 minutes
    config = feed_config(tmp_path, feeds_of(feeds), receiver.url())
    daemon = daemons(config, tmp_path / "daemon.log", {"DATABASE_URL": cluster.url})
    daemon.wait_for("daemon started")
    eventually(lambda: len(receiver.requests) >= FEEDS, "the first hits delivered")
    pause = threading.Event()
    for _ in range(restarts):
        pause.wait(every)  # the load runs this long between two restarts (the fault's rhythm)
        before = len(receiver.requests)
        cluster.restart_immediate()
        assert daemon.proc.poll() is None
        eventually(lambda b=before: len(receiver.requests) > b, "deliveries resume")
    expected, stored, received = settle(feeds, cluster.url, receiver)
    assert daemon.terminate() == 0
    loss = tally("S6", expected_hits=expected, stored_hits=stored, expected_ids=set(),
                 received=received, crashes=restarts)  # fmt: skip
    retried = daemon.count("database write retried")
    measured(notes=f"{restarts} restarts every {every:.0f}s; {retried} writes retried")
    figure("safety", "S6 restarts; writes retried; ticks backed off",
           f"{restarts}; {retried}; {daemon.count('database away')}")  # fmt: skip
    assert loss.hits_lost == 0 and loss.hits_duplicated == 0 and loss.duplicates_other_id == 0
    assert loss.deliveries_missing == 0


# --- S7: unreachable behind a proxy ----------------------------------------------------------


class Proxy:
    """A loopback TCP proxy in front of PostgreSQL. ``cut()``: every connection is reset
    and new ones are accepted but never answered (a partition, as the client sees it);
    ``mend()``: traffic flows again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if not self.flowing.is_set():
            self.flowing.wait()  # a blackhole until mended; then this one is dropped
            self._drop(client)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self._drop(client)
            return
        with self.lock:
            self.open.add(server)
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._drop(src)
        self._drop(dst)

    def _drop(self, s: socket.socket) -> None:
        with self.lock:
            self.open.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def cut(self) -> None:
        self.flowing.clear()
        with self.lock:
            victims = list(self.open)
        for s in victims:
            self._drop(s)

    def mend(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.flowing.set()
        self.listener.close()
        self.cut()


@case("S7", "fault", "PostgreSQL unreachable (proxy cut): daemon up, db_unavailable, resumes")
def test_an_unreachable_database_is_reported_and_survived(
    pg_url: str, feeds: GrowingFeeds, receiver: TimedReceiver, tmp_path: Path, daemons,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """With the proxy to PostgreSQL cut (connections reset, new ones blackholed) the daemon
    stays up, /healthz answers 503 db_unavailable without hanging, ticks back off; once the
    proxy mends it resumes and loses nothing."""
    outage = 120.0 if repetitions(request.config, fast=1, full=2) > 1 else 15.0
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = Proxy((host, int(port)))
    via_proxy = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    try:
        config = feed_config(tmp_path, feeds_of(feeds), receiver.url())
        daemon = daemons(config, tmp_path / "daemon.log", {"DATABASE_URL": via_proxy})
        daemon.wait_for("daemon started")
        eventually(lambda: len(receiver.requests) >= FEEDS, "the first hits delivered")
        proxy.cut()
        cut_at = time.monotonic()

        def unavailable() -> dict | None:
            status, body = daemon.healthz()
            return body if status == 503 and body["database"] == "db_unavailable" else None

        body = eventually(unavailable, "/healthz says db_unavailable", 60)
        answered = time.monotonic() - cut_at
        threading.Event().wait(max(0.0, outage - answered))  # the outage lasts this long
        assert daemon.proc.poll() is None
        started_healthz = time.monotonic()
        status, _ = daemon.healthz()
        healthz_s = time.monotonic() - started_healthz
        proxy.mend()
        mended_at = time.monotonic()
        eventually(lambda: daemon.healthz()[0] == 200, "/healthz 200 again", 90)
        recovery = time.monotonic() - mended_at
        expected, stored, received = settle(feeds, pg_url, receiver)
        assert daemon.terminate() == 0
    finally:
        proxy.close()
    loss = tally("S7", expected_hits=expected, stored_hits=stored, expected_ids=set(),
                 received=received)  # fmt: skip
    figure("safety", "S7 outage s; /healthz during it s; recovery after mend s",
           f"{outage:.0f}; {healthz_s:.1f} ({status}); {recovery:.1f}")  # fmt: skip
    measured(notes=f"healthz {body['database']} after {answered:.1f}s")
    assert status == 503 and body["database"] == "db_unavailable"
    assert loss.hits_lost == 0 and loss.hits_duplicated == 0 and loss.duplicates_other_id == 0
    assert loss.deliveries_missing == 0
