"""Database connections that recover after their server went away.

Django closes a connection that failed (a PostgreSQL server restarted, a network cut) at the
start and end of each request, through the request signals. The node's own threads never see
those signals: the storage writer thread, and the thread the lean API routes and the state
machines' reads run on. Without this, a connection broken once failed every later call on its
thread until the node restarted (a review: every lean KV read answered 500 after a PostgreSQL
restart, while writes had recovered).

Before each call, a connection the server has already hung up on is replaced: a PostgreSQL
server that restarts (or ends a backend) closes the socket of every idle connection, which makes
that socket readable although no query is running. Found only by failing, such a connection
cost the first call on every thread after a restart: a read answered 500, and on the writer
thread the first turn failed, which stops a node (``docs/operations.md``, "A node whose database
fails"); after one server restart, the first write of a quiet cluster stopped every node at once
(a review reproduced it). Django's own views look at their thread's connections the same way, as
each request starts (``close_hung_up_at_request``). The look costs one ``poll`` of the socket,
with no round trip to the server. A connection that breaks while a call runs still fails that
call, and is replaced after it.
"""

from __future__ import annotations

import contextlib
import functools
import select
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.pq import TransactionStatus

P = ParamSpec("P")
T = TypeVar("T")


def reconnecting(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn``, closing the calling thread's unusable connections when it raises, so that the
    next call on the thread opens a new one. Run the wrapped function on the thread whose
    connection it uses (Django's connections are per thread).

    A connection inside a transaction is left alone: closing it would end the transaction of
    whoever opened it around this call, silently, and its block would then commit nothing
    (Django's ``close_old_connections`` closes it all the same)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        close_hung_up()
        try:
            return fn(*args, **kwargs)
        except Exception:
            for connection in connections.all(initialized_only=True):
                if not connection.in_atomic_block:
                    connection.close_if_unusable_or_obsolete()
            raise

    return call


def close_hung_up() -> None:
    """Close the calling thread's idle PostgreSQL connections that their server has closed
    (``hung_up``), so that the next query opens a new one instead of failing."""
    for connection in connections.all(initialized_only=True):
        if (
            connection.vendor == "postgresql"
            and not connection.in_atomic_block
            and hung_up(connection)
        ):
            with contextlib.suppress(DatabaseError):
                connection.close()


def close_hung_up_at_request(**_kwargs: object) -> None:
    """``close_hung_up`` as a ``request_started`` receiver (``consensus.apps``): the threads
    that serve Django's own views (the DRF views, the admin, the dashboard pages) look at their
    connections there, as Django's ``close_old_connections`` does."""
    close_hung_up()


def hung_up(connection: BaseDatabaseWrapper) -> bool:
    """Whether an idle connection's socket has something to read: between queries, that is the
    server's goodbye (a FATAL notice, then end of file). An asynchronous notice from a healthy
    server looks the same; it costs that connection a reconnect, nothing more."""
    raw = connection.connection
    if raw is None or raw.closed:
        return False
    try:
        status = raw.info.transaction_status  # psycopg's pq.TransactionStatus
        if status == TransactionStatus.UNKNOWN:  # libpq knows the connection is bad
            return True
        if status != TransactionStatus.IDLE:  # a query or transaction runs: not ours to judge
            return False
        socket = raw.pgconn.socket
    except Exception:  # noqa: BLE001 - psycopg refuses on a connection it knows is bad
        return True
    poller = select.poll()
    poller.register(socket, select.POLLIN)
    return bool(poller.poll(0))
