"""The child-process network guard (RELIABILITY 3.0, 3(c) 8) really refuses: a process
started the way tests start daemons cannot connect outside loopback, and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from casebook import figure

pytestmark = pytest.mark.reliability

PROBE = """
import socket
for target in [("192.0.2.1", 80), ("2001:db8::1", 80, 0, 0), ("127.0.0.1", 9)]:
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.connect(target)
    except ConnectionRefusedError as e:
        print("refused", target[0], "guard" in str(e))
    except OSError as e:
        print("error", target[0], type(e).__name__)
    finally:
        s.close()
"""


def test_a_child_process_cannot_leave_loopback(tmp_path: Path) -> None:
    """192.0.2.1 and 2001:db8::1 are refused by the guard before any packet; 127.0.0.1 is
    let through (refused by the kernel: nothing listens); each refusal is logged."""
    log = tmp_path / "refused.log"
    env = {**os.environ, "MONITOR_NETGUARD_LOG": str(log)}  # not the session's: no failure
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[:2] == ["refused 192.0.2.1 True", "refused 2001:db8::1 True"], done.stderr
    assert lines[2] == "refused 127.0.0.1 False"  # the kernel's refusal, not the guard's
    assert len(log.read_text().splitlines()) == 2
    figure("safety", "child guard self-test: outside connects refused / tried", "2/2")
