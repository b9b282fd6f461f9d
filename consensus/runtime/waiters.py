"""The futures of the commands a node's callers wait for, by group and request id.

The applier resolves them from the writer thread's results (``PaxosNode._resolve``), a stop
fails them all with errors that name their request ids, and a retry of a command already
chosen here gets its first result marked as a duplicate (``as_duplicate``)."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

from .apply import Outcome
from .errors import SubmitError


@dataclass
class Waiters:
    """Client futures by (group, request id). Several callers with one request id share one."""

    futures: dict[tuple[int, str], asyncio.Future[Outcome]] = field(default_factory=dict)
    per_group: dict[int, int] = field(default_factory=dict)
    """How many of ``futures`` each group has (``waiting``, once per group and turn)."""
    loop: asyncio.AbstractEventLoop | None = None
    """The node's loop once it started: ``get_running_loop()`` per command was a system call
    (``getpid``, CPython 3.11) and ~3% of a node's busy samples under load (py-spy)."""

    def get(self, group_id: int, request_id: str) -> asyncio.Future[Outcome]:
        key = (group_id, request_id)
        future = self.futures.get(key)
        if future is None or future.done():
            if future is None:
                self.per_group[group_id] = self.per_group.get(group_id, 0) + 1
            future = (self.loop or asyncio.get_running_loop()).create_future()
            self.futures[key] = future
        return future

    def waiting(self, group_id: int) -> bool:
        return self.per_group.get(group_id, 0) > 0

    def _pop(self, group_id: int, request_id: str) -> asyncio.Future[Outcome] | None:
        future = self.futures.pop((group_id, request_id), None)
        if future is not None:
            self.per_group[group_id] -= 1
        return future

    def resolve(self, outcome: Outcome) -> None:
        future = self._pop(outcome.group_id, outcome.request_id)
        if future is not None and not future.done():
            future.set_result(outcome)

    def fail(self, group_id: int, request_id: str, error: Exception) -> None:
        future = self._pop(group_id, request_id)
        if future is not None and not future.done():
            future.set_exception(error)

    def discard(self, group_id: int, request_id: str) -> None:
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
