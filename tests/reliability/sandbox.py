"""Run one hostile case in a forked child under ``RLIMIT_AS`` and measure it (RELIABILITY.md 3.0).

The child starts as a copy of the test process (modules loaded, the network
guard on), lowers its own address-space limit to what it already maps plus a
budget, runs the case, and sends back the case's result with its figures:

- peak RSS: ``VmHWM`` after the case, with the high-water mark reset just
  before it (``/proc/self/clear_refs``), so the parent's memory, which the
  child shares, is not charged to the case; ``rss_growth_mib`` is that peak
  minus the RSS the case started from (after a ``malloc_trim``). That is a
  lower bound: the child inherits the parent's heap, and allocations may land
  on pages the parent freed but still holds, so also
- the peak of Python's own allocations during the case (``tracemalloc``,
  every thread), which counts every buffer whatever pages it lands on;
- the largest peak RSS of the parse workers, read from each worker's
  ``/proc/<pid>/status`` just before it is stopped or killed (not
  ``RUSAGE_CHILDREN``: Linux folds the forking process's high-water mark into
  a spawned child's ``ru_maxrss`` at exec, so it never reads below the child);
- open file descriptors before and after, and the connects the network
  guard refused inside the child (the parent's guard cannot see them).

A case that runs away is stopped by the limit (a MemoryError inside the
child) or killed at ``timeout``; either way the parent gets a clear failure
instead of an exhausted machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import pickle
import resource
import select
import signal
import time
import traceback
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any, TypeVar

T = TypeVar("T")
MIB = 1024 * 1024


@dataclass(frozen=True)
class ChildFigures:
    wall_s: float  # from the start of the measured part to its end
    peak_rss_mib: float  # the child's VmHWM during the measured part
    rss_growth_mib: float  # that peak minus the RSS the measured part started from
    py_heap_peak_mib: float  # the peak of Python allocations during the measured part
    workers_peak_rss_mib: float  # the largest parse worker's VmHWM (0: no worker ran)
    fds_before: int  # when the child started, before the case's setup
    fds_after: int  # after the case's teardown
    forbidden_connects: int
    address_space_mib: int  # the RLIMIT_AS the case ran under


class ChildFailed(AssertionError):
    """The case raised inside the child, was killed, or overran ``timeout``."""


_start: dict[str, float] = {}  # set in the child by measure_from_here()


def _status(field: str, pid: int | str = "self") -> float:
    """A ``kB`` field of /proc/<pid>/status, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _watch_parse_workers() -> list[float]:
    """Record each parse worker's peak RSS as the pool stops or kills it."""
    from monitor.sources import parse

    peaks: list[float] = []
    for name in ("kill", "stop"):
        real = getattr(parse._Worker, name)

        def watched(worker: Any, real: Any = real) -> None:
            with contextlib.suppress(OSError, KeyError, TypeError):  # already gone
                peaks.append(_status("VmHWM", worker.process.pid))
            real(worker)

        setattr(parse._Worker, name, watched)
    return peaks


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _trim_heap() -> None:
    """Give free heap pages back (glibc ``malloc_trim``): the child inherits the parent's heap,
    and allocations that land on freed but still resident pages would not show as growth."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_from_here() -> None:
    """Start the measured part of a case (after its setup). A no-op outside a child."""
    if "child" not in _start:
        return
    gc.collect()
    _trim_heap()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    tracemalloc.stop()
    tracemalloc.start()
    _start.update(rss=_status("VmRSS"), at=time.monotonic())


def run_isolated(
    case: Callable[[], T], *, address_space_mib: int = 2048, timeout: float = 120.0
) -> tuple[T, ChildFigures]:
    """``case()`` in a forked child under RLIMIT_AS (current mappings + the budget)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_end)
        try:
            payload = _run_child(case, address_space_mib)
        except BaseException as e:  # the parent reports it; the child must still exit
            payload = ("raised", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        try:
            data = pickle.dumps(payload)
        except Exception as e:  # an unpicklable result is a bug in the test
            data = pickle.dumps(("raised", f"result not picklable: {e}"))
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write_end)
    data = _read_all(read_end, pid, timeout)
    _, status, _ = os.wait4(pid, 0)
    if not data:
        raise ChildFailed(f"the child died without a result (wait status {status})")
    kind, *rest = pickle.loads(data)
    if kind == "raised":
        raise ChildFailed(rest[0])
    return rest[0], rest[1]


def _read_all(fd: int, pid: int, timeout: float) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(fd, "rb") as f:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([f], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.wait4(pid, 0)
                raise ChildFailed(f"the case overran {timeout:g}s and was killed")
            chunk = os.read(f.fileno(), 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _run_child(case: Callable[[], Any], address_space_mib: int) -> tuple[str, Any, ChildFigures]:
    import conftest  # the guard's record of refused connects, as this child sees it

    refused_before = len(conftest.forbidden_connects)
    limit = int((_status("VmSize") + address_space_mib) * MIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The resource tracker is a process-wide helper the first spawned worker starts: count
    # it in the baseline, so fds_after - fds_before is what the case left open.
    resource_tracker.ensure_running()
    worker_peaks = _watch_parse_workers()
    _start.update(child=1.0, fds=_fds())
    measure_from_here()  # a case without setup is measured from the start
    result = case()
    gc.collect()  # objects the case dropped in reference cycles close their fds now
    wall = time.monotonic() - _start["at"]
    peak = _status("VmHWM")
    py_peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    workers = max(worker_peaks, default=0.0)
    figures = ChildFigures(
        wall_s=round(wall, 3),
        peak_rss_mib=round(peak, 1),
        rss_growth_mib=round(peak - _start["rss"], 1),
        py_heap_peak_mib=round(py_peak, 2),
        workers_peak_rss_mib=round(workers, 1),
        fds_before=int(_start["fds"]),
        fds_after=_fds(),
        forbidden_connects=len(conftest.forbidden_connects) - refused_before,
        address_space_mib=address_space_mib,
    )
    return ("ok", result, figures)
