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


@dataclass
class Waiters:
    """Client futures by (group, request id). Several callers with one request id share one."""

    futures: dict[tuple[int, str], asyncio.Future[Outcome]] = field(default_factory=dict)
    payloads: dict[tuple[int, str], str] = field(default_factory=dict)
    """The command each waiter waits for (where its caller said)."""
    callers: dict[tuple[int, str], int] = field(default_factory=dict)
    """How many callers wait on each future: one that gives up (``discard``: its timeout, its
    client gone) leaves it to the others, who would otherwise never hear of the outcome."""
    per_group: dict[int, int] = field(default_factory=dict)
    """How many of ``futures`` each group has (``waiting``, once per group and turn)."""
    loop: asyncio.AbstractEventLoop | None = None
    """The node's loop once it started: ``get_running_loop()`` per command was a system call
    (``getpid``, CPython 3.11) and ~3% of a node's busy samples under load (py-spy)."""

    def get(
        self, group_id: int, request_id: str, payload: str | None = None
    ) -> asyncio.Future[Outcome]:
        """The future of ``request_id``'s outcome, shared with the callers already waiting for
        it; ``RequestIdReusedError`` if they wait for another ``payload`` under that id."""
        key = (group_id, request_id)
        future = self.futures.get(key)
        if future is None or future.done():
            if future is None:
                self.per_group[group_id] = self.per_group.get(group_id, 0) + 1
            future = (self.loop or asyncio.get_running_loop()).create_future()
            self.futures[key] = future
            self.callers[key] = 1
            if payload is not None:
                self.payloads[key] = payload
            else:
                self.payloads.pop(key, None)
        else:
            if payload is not None:
                waited = self.payloads.get(key)
                if waited is not None and not same_command(waited, payload):
                    raise reused(group_id, request_id)
            self.callers[key] += 1
        return future

    def waiting(self, group_id: int) -> bool:
        return self.per_group.get(group_id, 0) > 0

    def _pop(self, group_id: int, request_id: str) -> asyncio.Future[Outcome] | None:
        key = (group_id, request_id)
        future = self.futures.pop(key, None)
        if future is not None:
            self.per_group[group_id] -= 1
            self.payloads.pop(key, None)
            del self.callers[key]
        return future

    def resolve(self, outcome: Outcome) -> None:
        key = (outcome.group_id, outcome.request_id)
        waited = self.payloads.get(key)
        future = self._pop(*key)
        if future is None or future.done():
            return
        chosen = outcome.payload
        if waited is not None and chosen is not None and not same_command(chosen, waited):
            future.set_exception(reused(outcome.group_id, outcome.request_id, outcome.instance))
        else:
            future.set_result(outcome)

    def fail(self, group_id: int, request_id: str, error: Exception) -> None:
        future = self._pop(group_id, request_id)
        if future is not None and not future.done():
            future.set_exception(error)

    def discard(
        self, group_id: int, request_id: str, future: asyncio.Future[Outcome] | None = None
    ) -> None:
        """One caller stops waiting; the future goes when the last one does. ``future``: the
        one it waited on, if it knows it; a caller that gives up after its future was resolved
        must not count against a new one for the same id."""
        key = (group_id, request_id)
        if future is not None and self.futures.get(key) is not future:
            return
        left = self.callers.get(key, 0) - 1
        if left > 0:
            self.callers[key] = left
        else:
            self._pop(group_id, request_id)

    def fail_all(self, reason: str) -> None:
        """Fail every waiter: its command's outcome is unknown (it may have been proposed, and
        be chosen through another node), so each error names its request id."""
        for (_group_id, request_id), future in self.futures.items():
            if not future.done():
                error = SubmitError(
                    f"{reason} before this command's outcome was known (it may still be "
                    "chosen): retry with the same request_id on another node",
                    retry_after=0.1,
                )
                error.request_id = request_id
                future.set_exception(error)
        self.futures.clear()
        self.payloads.clear()
        self.callers.clear()
        self.per_group.clear()


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
