"""Request ids that are cheap to index: a random per-process prefix and a counter.

Every command's request id becomes a row of ``RequestResult`` on every node (exactly-once), under
a unique index on ``(group, request_id)``. Random ids (``uuid4``) land on random pages of that
index, which costs about five times more per insert than ids that grow: measured with SQLite,
23-37 µs against 5.5-7 µs per row in a 100,000-400,000-row table. So the ids this project makes
itself (the node for a REST call without a ``request_id``, both clients for retries) are a
64-bit random prefix, unique per process, followed by a counter: every process appends to its
own corner of the index. Callers may still send any id they like (a UUID works, only slower).
"""

from __future__ import annotations

import itertools
import os
import secrets

_prefix = secrets.token_hex(8)
_counter = itertools.count()


def _new_prefix() -> None:
    """Draw the prefix again in a forked child, so parent and child never share ids."""
    global _prefix, _counter
    _prefix, _counter = secrets.token_hex(8), itertools.count()


os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    """A fresh id, unique across processes and restarts (28 hex digits, like a short UUID).

    No ``os.getpid()`` here: a system call per id was 1-2% of a node's CPU under REST load."""
    return f"{_prefix}{next(_counter):012x}"
