"""Log setup: one line per event, ``event key=value ...``, as text or JSON.

Feed text can carry newlines meant to forge log lines (RELIABILITY F26), so
every message is kept on one line: newlines and other control characters are
escaped. ``--log-format json`` writes one JSON object per line, with the
``key=value`` pairs of the message as fields, for log shippers.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_PAIR = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def one_line(text: str) -> str:
    """Escape control characters (newlines included) so a record stays on one line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event = _PAIR.split(message, maxsplit=1)[0].strip() if "=" in message else message
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        for key, value in _PAIR.findall(message):
            line.setdefault(key, value[1:-1] if value[:1] in "'\"" else value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)  # json escapes newlines itself


def setup_logging(fmt: str = "text", verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)  # we log each fetch ourselves
    # trafilatura logs its verdict on a page ("discarding data", "not valid HTML") at
    # WARNING and ERROR, without the source or file; the folder and full-text steps log
    # one line per page that had no main text, with source, path and reason.
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    # APScheduler logs every job run, and a warning whenever a tick is still running when
    # the next is due (expected: ticks coalesce); our ticks log their own events.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
