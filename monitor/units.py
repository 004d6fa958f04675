"""Durations (``30s``, ``10m``, ``6h``, ``7d``) and sizes (``512KiB``, ``10MiB``)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}


def parse_duration(text: str) -> timedelta:
    """``"10m"`` -> 10 minutes. Raises ValueError with a readable message."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 10m, 6h, 7d)")
    return timedelta(seconds=float(m.group(1)) * _DURATION_UNITS[m.group(2)])


def parse_size(text: str | int) -> int:
    """``"10MiB"`` -> 10485760 bytes. A bare integer is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512KiB, 10MiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def format_duration(delta: timedelta) -> str:
    """The shortest readable form: 90s -> ``1m30s``; used in tables."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "-" + format_duration(-delta)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])
