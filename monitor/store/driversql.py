"""Multi-row statements handed to the database driver as SQL text.

A feed poll stores ~270 rows. Built as SQLAlchemy Core statements, preparing
them (a parameter dict per row, a type processor per value, insertmanyvalues'
batching) cost more CPU than SQLite took to store them, and that CPU is spent
in the one thread that stores polls (bench/bench_feeds.py, issue #3). Here a
statement is text with the driver's own placeholders and its parameters one
flat tuple. It still runs through the SQLAlchemy connection
(``exec_driver_sql``): the transaction, the health events and the error
translation stay as for every other statement.

Values must be what the driver takes as they are: str, int, float, bytes,
None, and datetimes made with ``Driver.time`` (the same text or value the
table's ``UTCDateTime`` column type writes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection
from sqlmodel import SQLModel

from monitor.store.tables import sqlite_time, utc


@dataclass(frozen=True)
class Driver:
    """What differs between the drivers for these statements."""

    mark: str  # the placeholder: "?" for sqlite3, "%s" for psycopg
    max_params: int  # bound parameters in one statement
    time: Callable[[datetime], Any]  # an aware datetime as the column stores it

    def sql(self, text: str) -> str:
        """``text`` written with ``?`` placeholders, in this driver's style."""
        return text if self.mark == "?" else text.replace("?", self.mark)


_DRIVERS = {
    # RETURNING needs SQLite 3.35, which allows 32,766 parameters a statement; fewer keeps
    # each statement small.
    "sqlite": Driver("?", 5_000, sqlite_time),
    "postgresql": Driver("%s", 5_000, utc),
}


def driver(connection: Connection) -> Driver:
    return _DRIVERS[connection.dialect.name]


def columns(table: type[SQLModel], *names: str) -> str:
    """``names`` as a column list, checked against ``table`` (a typo fails at import)."""
    known = set(SQLModel.metadata.tables[str(table.__tablename__)].columns.keys())
    missing = [name for name in names if name not in known]
    if missing:
        raise KeyError(f"{table.__tablename__} has no column {missing}")
    return ", ".join(names)


@lru_cache(maxsize=256)
def _marks(mark: str, count: int) -> str:
    return ", ".join([mark] * count)


@lru_cache(maxsize=256)
def _values(mark: str, width: int, count: int) -> str:
    return ", ".join([f"({_marks(mark, width)})"] * count)


def insert(
    connection: Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> list[Any]:
    """``head`` VALUES (...), (...) ``tail`` for all ``rows``, in as few statements as the
    parameter limit allows; the rows a RETURNING in ``tail`` gave, in no promised order.
    ``head`` and ``tail`` are written with ``?`` placeholders, like every statement here."""
    if not rows:
        return []
    d = driver(connection)
    head, tail = d.sql(head), d.sql(tail)
    width = len(rows[0])
    per = max(1, d.max_params // width)
    returned: list[Any] = []
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        sql = f"{head} VALUES {_values(d.mark, width, len(chunk))} {tail}"
        result = connection.exec_driver_sql(sql, tuple(v for row in chunk for v in row))
        if result.returns_rows:
            returned.extend(result.fetchall())
    return returned


def select_in(
    connection: Connection, head: str, fixed: tuple[Any, ...], values: Sequence[Any]
) -> list[Any]:
    """``head`` (with ``?`` placeholders for ``fixed``) IN (...) for every value in
    ``values``, in several statements past the parameter limit."""
    d = driver(connection)
    head, per = d.sql(head), d.max_params - len(fixed)
    found: list[Any] = []
    for i in range(0, len(values), per):
        chunk = tuple(values[i : i + per])
        sql = f"{head} IN ({_marks(d.mark, len(chunk))})"
        found.extend(connection.exec_driver_sql(sql, fixed + chunk).fetchall())
    return found


def execute_many(connection: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``sql`` (with ``?`` placeholders) once per row, in the driver's executemany."""
    if rows:
        connection.exec_driver_sql(driver(connection).sql(sql), list(rows))
