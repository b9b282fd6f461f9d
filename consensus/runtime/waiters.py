"""The futures of the commands a node's callers wait for, by group and request id.

The applier resolves them from the writer thread's results (``PaxosNode._resolve``), a stop
fails them all with errors that name their request ids, and a retry of a command already
chosen here gets its first result marked as a duplicate (``as_duplicate``).

A request id names one command. A waiter remembers the command it waits for, and an outcome
that carries another command under its id (``Outcome.payload``: a client reused the id for a
new command, and the first one is what was chosen) fails it with ``RequestIdReusedError``
(409) instead of handing it someone else's result as its own."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

import orjson

from .apply import Outcome
from .errors import RequestIdReusedError, SubmitError


def same_command(first: str, second: str) -> bool:
    """Whether a retry carries the command first sent with its request id: the same text, or
    the same JSON (a client library may serialize one object differently on a resend)."""
    if first == second:
        return True
    try:
        return bool(orjson.loads(first) == orjson.loads(second))
    except orjson.JSONDecodeError:
        return False


def reused(group_id: int, request_id: str, instance: int | None = None) -> RequestIdReusedError:
    """The 409 of a request id sent again with a different command."""
    where = f"group {group_id}" if instance is None else f"group {group_id}, instance {instance}"
    return RequestIdReusedError(
        f"request_id {request_id!r} was already used for a different command ({where}); a "
        "retry must send the same command, a new command needs a new request_id"
    )


@dataclass(slots=True)
class _Waiter:
    """What the callers of one (group, request id) wait on. One record, so that adding,
    joining and dropping a waiter keep its future, command and callers together."""

    future: asyncio.Future[Outcome]
    payload: str | None
    """The command it waits for (where its first caller said)."""
    callers: int = 1
    """How many callers wait on ``future``: one that gives up (``discard``: its timeout, its
    client gone) leaves it to the others, who would otherwise never hear of the outcome."""


@dataclass
class Waiters:
    """Client futures by (group, request id). Several callers with one request id share one."""

    _waiters: dict[tuple[int, str], _Waiter] = field(default_factory=dict, init=False)
    _per_group: dict[int, int] = field(default_factory=dict, init=False)
    """How many of ``_waiters`` each group has (``waiting``, once per group and turn); only
    ``_add`` and ``_pop`` change it."""
    loop: asyncio.AbstractEventLoop | None = None
    """The node's loop once it started: ``get_running_loop()`` per command was a system call
    (``getpid``, CPython 3.11) and ~3% of a node's busy samples under load (py-spy)."""

    def future_of(self, group_id: int, request_id: str) -> asyncio.Future[Outcome] | None:
        """The future ``request_id`` waits on now: the one ``discard`` would drop."""
        waiter = self._waiters.get((group_id, request_id))
        return None if waiter is None else waiter.future

    def __len__(self) -> int:
        return len(self._waiters)

    def get(
        self, group_id: int, request_id: str, payload: str | None = None
    ) -> asyncio.Future[Outcome]:
        """The future of ``request_id``'s outcome, shared with the callers already waiting for
        it; ``RequestIdReusedError`` if they wait for another ``payload`` under that id."""
        key = (group_id, request_id)
        waiter = self._waiters.get(key)
        if waiter is None or waiter.future.done():
            future = (self.loop or asyncio.get_running_loop()).create_future()
            self._add(key, _Waiter(future, payload))
            return future
        waited = waiter.payload
        if payload is not None and waited is not None and not same_command(waited, payload):
            raise reused(group_id, request_id)
        waiter.callers += 1
        return waiter.future

    def waiting(self, group_id: int) -> bool:
        return self._per_group.get(group_id, 0) > 0

    def _add(self, key: tuple[int, str], waiter: _Waiter) -> None:
        """Wait on ``waiter`` for ``key``, in place of a done one if it had one."""
        if key not in self._waiters:
            self._per_group[key[0]] = self._per_group.get(key[0], 0) + 1
        self._waiters[key] = waiter

    def _pop(self, group_id: int, request_id: str) -> _Waiter | None:
        waiter = self._waiters.pop((group_id, request_id), None)
        if waiter is not None:
            self._per_group[group_id] -= 1
        return waiter

    def resolve(self, outcome: Outcome) -> None:
        waiter = self._pop(outcome.group_id, outcome.request_id)
        if waiter is None or waiter.future.done():
            return
        waited, chosen = waiter.payload, outcome.payload
        if waited is not None and chosen is not None and not same_command(chosen, waited):
            error = reused(outcome.group_id, outcome.request_id, outcome.instance)
            waiter.future.set_exception(error)
        else:
            waiter.future.set_result(outcome)

    def fail(self, group_id: int, request_id: str, error: Exception) -> None:
        waiter = self._pop(group_id, request_id)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_exception(error)

    def discard(
        self, group_id: int, request_id: str, future: asyncio.Future[Outcome] | None = None
    ) -> None:
        """One caller stops waiting; the future goes when the last one does. ``future``: the
        one it waited on, if it knows it; a caller that gives up after its future was resolved
        must not count against a new one for the same id."""
        waiter = self._waiters.get((group_id, request_id))
        if waiter is None or (future is not None and waiter.future is not future):
            return
        waiter.callers -= 1
        if waiter.callers <= 0:
            self._pop(group_id, request_id)

    def fail_all(self, reason: str) -> None:
        """Fail every waiter: its command's outcome is unknown (it may have been proposed, and
        be chosen through another node), so each error names its request id."""
        for (_group_id, request_id), waiter in self._waiters.items():
            if not waiter.future.done():
                error = SubmitError(
                    f"{reason} before this command's outcome was known (it may still be "
                    "chosen): retry with the same request_id on another node",
                    retry_after=0.1,
                )
                error.request_id = request_id
                waiter.future.set_exception(error)
        self._waiters.clear()
        self._per_group.clear()


def as_duplicate(source: asyncio.Future[Outcome], chosen_in: int) -> asyncio.Future[Outcome]:
    """``source``'s outcome marked as a duplicate if it is that of instance ``chosen_in``: the
    answer to a retry of a command this node already saw chosen, even when it comes from
    applying that instance here for the first time (a follower applies late what was submitted
    elsewhere). An outcome of a later instance is the command applied again after its stored
    result was pruned: not a duplicate."""
    derived: asyncio.Future[Outcome] = source.get_loop().create_future()

    def copy(done: asyncio.Future[Outcome]) -> None:
        if derived.done():
            return
        if done.cancelled():
            derived.cancel()
        elif (error := done.exception()) is not None:
            derived.set_exception(error)
        else:
            outcome = done.result()
            if outcome.instance == chosen_in:
                outcome = dataclasses.replace(outcome, duplicate=True)
            derived.set_result(outcome)

    source.add_done_callback(copy)
    return derived
