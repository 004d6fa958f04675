"""Reading YAML safely (no anchors, no aliases, 1 MiB at most) and collecting problems with
their file and place while ``${VAR}`` is interpolated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from monitor.config.model import (
    _VAR,
    MAX_CONFIG_BYTES,
)
from monitor.errors import Problem

# --- reading --------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors and aliases (no alias bombs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise yaml.MarkedYAMLError(
                problem="YAML anchors and aliases are not allowed", problem_mark=mark
            )
        return super().compose_node(parent, index)


def _read_yaml(path: Path, checker: _Checker) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            checker.problem("", f"file is {size} bytes; the limit is 1 MiB")
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        checker.problem("", f"cannot read: {e}")
        return None
    checker.digest.update(text.encode())
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        checker.problem(place, f"invalid YAML: {e.problem}")
    except yaml.YAMLError as e:
        checker.problem("", f"invalid YAML: {e}")
    return None


# --- validation helpers -----------------------------------------------------------


class _Checker:
    """Collects problems for one file and interpolates ``${VAR}`` in its strings."""

    def __init__(self, file: str, env: dict[str, str], problems: list[Problem] | None = None):
        self.file = file
        self.env = env
        self.problems: list[Problem] = [] if problems is None else problems
        self.digest = hashlib.sha256()

    def for_file(self, file: str) -> _Checker:
        other = _Checker(file, self.env, self.problems)
        other.digest = self.digest
        return other

    def problem(self, place: str, message: str) -> None:
        self.problems.append(Problem(self.file, place, message))

    def mapping(self, value: Any, place: str, allowed: dict[str, bool]) -> dict[str, Any]:
        """Check a mapping's keys: ``allowed`` maps key -> required."""
        if not isinstance(value, dict):
            self.problem(place, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.problem(_join(place, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        for key, required in allowed.items():
            if required and value.get(key) is None:
                self.problem(_join(place, key), "required")
        return {k: v for k, v in value.items() if k in allowed}

    def string(self, value: Any, place: str, *, pattern: re.Pattern[str] | None = None) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(place, f"expected a string, got {_kind(value)}")
            return ""
        text = self.interpolate(str(value), place)
        if pattern and not pattern.match(text):
            self.problem(place, f"{text!r} must match {pattern.pattern}")
        return text

    def strings(self, value: Any, place: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.problem(place, f"expected a list, got {_kind(value)}")
            return ()
        return tuple(self.string(v, f"{place}[{i}]") for i, v in enumerate(value))

    def boolean(self, value: Any, place: str) -> bool:
        if isinstance(value, str):
            value = {"true": True, "false": False}.get(
                self.interpolate(value, place).lower(), value
            )
        if not isinstance(value, bool):
            self.problem(place, f"expected true or false, got {value!r}")
            return False
        return value

    def convert(self, value: Any, place: str, parse: Callable[[str], Any], default: Any) -> Any:
        """Parse a duration or size; a zero or negative value is an error."""
        try:
            result = parse(self.string(value, place))
        except ValueError as e:
            self.problem(place, str(e))
            return default
        if (result.total_seconds() if isinstance(result, timedelta) else result) <= 0:
            self.problem(place, f"must be greater than zero, got {value!r}")
            return default
        return result

    def interpolate(self, text: str, place: str) -> str:
        def replace(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(place, f"environment variable {name} is not set")
            return ""

        return _VAR.sub(replace, text)


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _items(checker: _Checker, value: Any, place: str) -> Iterator[tuple[str, Any]]:
    if value is None:
        return
    if not isinstance(value, list):
        checker.problem(place, f"expected a list, got {_kind(value)}")
        return
    for i, item in enumerate(value):
        yield f"{place}[{i}]", item
