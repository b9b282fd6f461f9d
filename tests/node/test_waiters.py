"""The bookkeeping of ``Waiters``: callers that share one future, the ones that give up, and the
per-group count behind ``waiting`` (consensus/runtime/waiters.py)."""

from __future__ import annotations

import asyncio

from consensus.runtime import SubmitError
from consensus.runtime.apply import Outcome
from consensus.runtime.waiters import Waiters


def test_a_caller_that_discards_leaves_the_shared_future_to_the_other() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        first = waiters.get(1, "r1", "a")
        second = waiters.get(1, "r1", "a")  # a retry joins the waiting command
        assert second is first
        waiters.discard(1, "r1", first)  # the first caller's timeout
        assert waiters.waiting(1) and waiters.future_of(1, "r1") is first
        waiters.resolve(Outcome(1, "r1", 5, "ok", payload="a"))
        assert second.result().instance == 5
        assert not len(waiters) and not waiters.waiting(1)

    asyncio.run(scenario())


def test_the_last_caller_to_discard_drops_the_waiter() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        future = waiters.get(1, "r1")
        waiters.get(1, "r1")
        waiters.get(2, "r2")
        waiters.discard(1, "r1", future)
        waiters.discard(1, "r1")  # ``forget``: no future named
        assert waiters.future_of(1, "r1") is None and not waiters.waiting(1)
        assert waiters.waiting(2) and len(waiters) == 1
        waiters.discard(1, "r1")  # nobody waits any more: nothing to do
        waiters.resolve(Outcome(1, "r1", 5, "ok"))
        assert not future.done() and not waiters.waiting(1)

    asyncio.run(scenario())


def test_a_new_future_in_place_of_a_done_one_counts_once_for_its_group() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        done = waiters.get(1, "r1", "a")
        done.cancel()  # done, but still registered
        again = waiters.get(1, "r1", "b")  # not a join: another command may come now
        assert again is not done and waiters.future_of(1, "r1") is again
        waiters.discard(1, "r1", done)  # not the future it waits on now
        assert waiters.waiting(1)
        waiters.discard(1, "r1", again)
        assert not waiters.waiting(1) and not len(waiters)

    asyncio.run(scenario())


def test_fail_all_fails_every_future_once_and_forgets_them() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        shared = waiters.get(1, "r1")
        assert waiters.get(1, "r1") is shared
        other = waiters.get(2, "r2")
        cancelled = waiters.get(2, "r3")
        cancelled.cancel()
        waiters.fail_all("node 3 stopped")  # setting a done future again would raise
        for future, request_id in ((shared, "r1"), (other, "r2")):
            error = future.exception()
            assert isinstance(error, SubmitError) and error.request_id == request_id
        assert cancelled.cancelled()
        assert not len(waiters) and not waiters.waiting(1) and not waiters.waiting(2)
        waiters.fail_all("node 3 stopped")  # nothing left to fail
        assert isinstance(shared.exception(), SubmitError)

    asyncio.run(scenario())
