"""Which database errors under a state machine are the command's, and which are the storage's.

A command whose ``apply`` raises gets the error as its result, and every node stores the same
one: that is right for a deterministic error, which every node meets at the same command (a
unique constraint, bad SQL, a value too long). It is wrong for an error of this node's database:
a full disk, a lost connection, a lock timeout, a corrupt file. The other nodes applied the
command; this one would store the error as its result for good, answer it to the client, and
move its applied index past a command it never applied. Worse, SQLite answers some of these
(``SQLITE_FULL``, ``SQLITE_IOERR``, ``SQLITE_NOMEM``, ``SQLITE_BUSY``) by rolling the whole
transaction back on its own, without Django noticing, so the rest of the turn would commit
statement by statement, a part of it without the rest. Such an error stops the node instead
(``StorageFailure``): a restart applies the command again, from the log, once the database
works.

What counts as deterministic is a short list, by the driver's own error code where there is one;
any other database error is the storage's. Neither mistake is cheap: a command's error taken for
the storage's stops every node at that command, restart after restart, until the state machine
is fixed; the storage's error taken for the command's costs the nodes' agreement for good.
"""

from __future__ import annotations

import sqlite3

from django.db import Error as DjangoDatabaseError
from django.db import InterfaceError, OperationalError, connections
from django.db.transaction import TransactionManagementError
from psycopg.pq import TransactionStatus


class StorageFailure(Exception):
    """The database failed under a state machine: the node stops (``PaxosNode._fail``) rather
    than store the error as the command's result."""


_SQLITE_COMMAND_ERRORS = {
    1,  # SQLITE_ERROR: bad SQL, no such table or column
    18,  # SQLITE_TOOBIG: a string or blob over the limit
    19,  # SQLITE_CONSTRAINT: unique, not null, check, foreign key
    20,  # SQLITE_MISMATCH: a datatype mismatch
    25,  # SQLITE_RANGE: a bind parameter out of range
}
"""Primary result codes of errors that any node meets at the same command."""

_POSTGRESQL_COMMAND_CLASSES = {
    "0A", "21", "22", "23", "27", "2F", "38", "39", "42", "44", "54", "P0"
}  # fmt: skip
"""SQLSTATE classes of the same: feature not supported, cardinality, data, integrity, triggered
data change, routine and external routine errors, syntax or access rule, check option, program
limit exceeded (an index row too large), PL/pgSQL ``RAISE``. Classes 08 (connection), 25
(transaction state), 40 (deadlock, serialization), 53 (disk full, out of memory), 55 (lock not
available), 57 (cancelled, shut down), 58 (I/O) and XX (internal, corrupt data) are the
storage's."""

_DJANGO_STORAGE_ERRORS = (OperationalError, InterfaceError)
"""For an error without a driver's code (raised by Django itself)."""


def is_storage_failure(error: BaseException) -> bool:
    """True if ``error``, raised while applying a command, is the database's and not the
    command's (see the module docstring), or was raised while handling one: a state machine
    that turns the database's error into a ``ValueError`` of its own does not make it the
    command's."""
    seen: set[int] = set()
    chained: BaseException | None = error
    while chained is not None and id(chained) not in seen:
        if _is_the_databases(chained):
            return True
        seen.add(id(chained))
        chained = chained.__cause__ or chained.__context__
    return False


def _is_the_databases(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, TransactionManagementError):
        # Deterministic (an ``atomic(durable=True)`` or a ``commit()`` inside the turn) unless
        # the transaction is broken, which ``transaction_lost`` sees for itself.
        return False
    driver_error = error.__cause__ if isinstance(error, DjangoDatabaseError) else error
    code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(driver_error, sqlite3.Error) and isinstance(code, int):
        return code & 0xFF not in _SQLITE_COMMAND_ERRORS
    sqlstate = getattr(driver_error, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return sqlstate[:2] not in _POSTGRESQL_COMMAND_CLASSES
    if isinstance(driver_error, sqlite3.Error):
        return not isinstance(driver_error, sqlite3.ProgrammingError | sqlite3.IntegrityError)
    if isinstance(error, DjangoDatabaseError):
        # Raised by Django itself ("Save with update_fields did not affect any rows"): the
        # command's, every node meets it; but a lost connection is not.
        return isinstance(error, _DJANGO_STORAGE_ERRORS)
    return type(driver_error).__module__.split(".")[0] == "psycopg"


def transaction_lost(using: str = "default") -> bool:
    """True if Django holds a transaction open (an ``atomic`` block) that the database has
    ended or aborted: SQLite rolled it back on its own (the connection is back in autocommit,
    and every later statement would commit alone: the turn's own statements go through the
    driver's cursor, which Django's broken-transaction check does not guard), or PostgreSQL
    aborted it, or the driver's connection is closed. A state machine that caught the
    database's error itself leaves the turn in that state."""
    connection = connections[using]
    if not connection.in_atomic_block or connection.connection is None:
        return False
    if connection.needs_rollback:
        return True  # an error left an atomic block whose savepoint could not be rolled back
    if connection.vendor == "sqlite":
        try:
            return not connection.connection.in_transaction
        except sqlite3.ProgrammingError:  # the driver's connection is closed
            return True
    if connection.vendor == "postgresql":
        status = connection.connection.info.transaction_status
        return status in (TransactionStatus.INERROR, TransactionStatus.UNKNOWN)  # UNKNOWN: closed
    return False
