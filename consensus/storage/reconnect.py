"""Database connections that recover after their server went away.

Django closes a connection that failed (a PostgreSQL server restarted, a network cut) at the
start and end of each request, through the request signals. The node's own threads never see
those signals: the storage writer thread, and the thread the lean API routes and the state
machines' reads run on. Without this, a connection broken once failed every later call on its
thread until the node restarted (a review: every lean KV read answered 500 after a PostgreSQL
restart, while writes had recovered).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import connections

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
        try:
            return fn(*args, **kwargs)
        except Exception:
            for connection in connections.all(initialized_only=True):
                if not connection.in_atomic_block:
                    connection.close_if_unusable_or_obsolete()
            raise

    return call
