"""``raw_cursor``: the database driver's own cursor, for the statements every turn runs.

Every turn of a node's loop runs a dozen statements on the writer thread (votes, chosen marks, the
chosen prefix, results, applied indexes), on every node, for every batch. Through Django's cursor
wrapper a statement costs about 15 µs of CPU on these machines (debug bookkeeping, thread-sharing
checks, ``%s`` rewritten to ``?`` by a regex each time); through the driver's cursor about 1.3 µs.
With one-command batches that difference was about a fifth of a node's writer time.

The statements stay what they were: plain SQL with ``%s`` placeholders, run inside the caller's
``transaction.atomic`` block on Django's own connection (so they commit and roll back with it),
and driver errors still surface as ``django.db`` exceptions. What is given up is only Django's
query log (``connection.queries``, ``CaptureQueriesContext``): tests that count statements trace
the connection instead (``tests/fixtures/statements.py``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections


class RawCursor:
    """``execute``/``executemany``/``fetchall``/``fetchmany`` of a DB-API cursor, with ``%s``
    placeholders on every backend (SQLite's driver wants ``?``: the text is rewritten once and
    cached)."""

    __slots__ = ("_cursor", "_qmark")

    def __init__(self, cursor: Any, qmark: bool) -> None:
        self._cursor = cursor
        self._qmark = qmark

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(_qmark(sql) if self._qmark else sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(_qmark(sql) if self._qmark else sql, rows)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        return self._cursor.fetchmany(size)


@contextlib.contextmanager
def raw_cursor(using: str = "default") -> Iterator[RawCursor]:
    """A ``RawCursor`` on the connection of ``using`` in this thread (opened if need be)."""
    connection = connections[using]
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        with connection.wrap_database_errors:
            yield RawCursor(cursor, connection.vendor == "sqlite")
    finally:
        cursor.close()


@functools.lru_cache(maxsize=512)
def _qmark(sql: str) -> str:
    """``%s`` placeholders as SQLite's ``?`` (the project's statements hold no other ``%``)."""
    return sql.replace("%s", "?")
