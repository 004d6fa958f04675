"""The network guard of RELIABILITY.md 3.0 for the test suite's child processes.

tests/conftest.py puts this folder first on ``PYTHONPATH`` for every process the tests
start (``monitor run`` daemons, their parse workers, helper scripts), so Python imports it
at start-up. Like the in-process guard, it refuses any ``connect``, ``connect_ex`` or
``sendto`` to an address outside 127.0.0.0/8 and ::1 *before* the system call, and appends
one line per refused attempt to ``$MONITOR_NETGUARD_LOG``, which the harness counts: a line
fails the test that was running. Connections made in C (libpq for PostgreSQL) bypass it;
the tests point those at 127.0.0.1 only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

_LOG = os.environ.get("MONITOR_NETGUARD_LOG")


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


def _refuse(address: Any) -> None:
    if _LOG:
        with open(_LOG, "a") as log:
            log.write(f"pid={os.getpid()} address={address!r}\n")
    raise ConnectionRefusedError(f"network guard: connect to {address!r} refused in tests")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        _refuse(address)
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        _refuse(address)
    return _connect_ex(self, address)


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> Any:
    if not _is_loopback(args[-1]):
        _refuse(args[-1])
    return _sendto(self, data, *args)


if _LOG:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign,assignment]
