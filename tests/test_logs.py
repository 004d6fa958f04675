"""Log lines stay one line per event, as text and as JSON."""

from __future__ import annotations

import json
import logging

from hostile_rows import row

from monitor.logs import JsonFormatter, TextFormatter


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("monitor.test", logging.WARNING, __file__, 1, message, args, None)


@row("F26")
def test_text_escapes_forged_newlines() -> None:
    """A title with a newline and a fake log line cannot forge a second record (F26)."""
    title = "Ok\n2026-01-01 ERROR forged\u202e"
    line = TextFormatter().format(record("poll failed source=%s title=%r", "wire", title))
    assert "\n" not in line and "ERROR forged" in line and "\\n" in line


def test_json_has_event_and_stable_keys() -> None:
    """JSON lines carry the event and each key=value pair of the message as a field."""
    line = JsonFormatter().format(record("delivery failed sink=%s attempt=%d error=%r", "ops", 3,
                                         "timed out\nretry"))  # fmt: skip
    data = json.loads(line)
    assert data["event"] == "delivery failed" and data["sink"] == "ops"
    assert data["attempt"] == "3" and data["level"] == "warning"
    assert "\n" not in line
