"""GroupCommitWriter: concurrent persists share transactions, all are durable, the loop never
touches the database, failures reach every waiter of the failed transaction."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

from consensus.core.ballot import Ballot
from consensus.core.messages import ChosenEntry, Command
from consensus.core.ready import AcceptedWrite, Persist, Ready
from consensus.core.storage import MemoryStorage
from consensus.storage.store import DjangoStorage
from consensus.storage.writer import GroupCommitWriter, WriterClosedError

pytestmark = pytest.mark.django_db(transaction=True)

_group_ids = itertools.count(5000)


@pytest.fixture
async def writer() -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(DjangoStorage(recent=16), thread_name="test-writer")
    yield writer
    await writer.close()


def vote(instance: int, ballot: Ballot) -> Persist:
    value = (Command(f"req-{instance}", f"payload-{instance}"),)
    return Persist(
        promised=ballot,
        accepted=(AcceptedWrite(instance, ballot, value),),
        chosen=(ChosenEntry(instance - 1, (Command(f"req-{instance - 1}", "x"),)),)
        if instance > 1
        else (),
    )


async def test_concurrent_persists_share_transactions(writer: GroupCommitWriter) -> None:
    groups = [next(_group_ids) for _ in range(4)]
    memories = {group: MemoryStorage(rebuilding=True) for group in groups}
    readies: list[Ready] = []
    for instance in range(1, 51):
        for group in groups:
            persist = vote(instance, Ballot(1, 1))
            memories[group].apply(persist)
            readies.append(Ready(group, persist, ()))

    await asyncio.gather(*(writer.persist(ready) for ready in readies))

    assert all(ready.persisted for ready in readies)
    assert writer.stats.readies == len(readies)
    assert writer.stats.transactions < len(readies) // 10
    cold = DjangoStorage(recent=16)
    for group in groups:
        state = await writer.run(cold.load, group)
        assert state == memories[group].initial_state(recent=16)


async def test_commits_keep_coming_while_one_runs(writer: GroupCommitWriter) -> None:
    """Readies submitted during a commit form the next one; nobody waits for an idle writer."""
    group = next(_group_ids)
    first = Ready(group, vote(1, Ballot(1, 1)), ())
    first_done = asyncio.ensure_future(writer.persist(first))
    await asyncio.sleep(0)  # the first commit is now on the thread
    rest = [Ready(group, vote(instance, Ballot(1, 1)), ()) for instance in range(2, 30)]
    await asyncio.gather(first_done, *(writer.persist(ready) for ready in rest))
    assert writer.stats.transactions <= 3
    assert writer.stats.largest_batch >= len(rest) // 2


async def test_empty_persist_returns_without_a_transaction(writer: GroupCommitWriter) -> None:
    ready = Ready(next(_group_ids), Persist(), ())
    await writer.persist(ready)
    assert ready.persisted
    assert writer.stats.transactions == 0


async def test_run_uses_the_writer_thread(writer: GroupCommitWriter) -> None:
    name = await writer.run(lambda: threading.current_thread().name)
    assert name.startswith("test-writer")
    assert name != threading.current_thread().name
    assert await writer.run(divmod, 7, 2) == (3, 1)


async def test_a_failed_commit_fails_its_waiters_only(
    writer: GroupCommitWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = next(_group_ids)
    real_persist = writer.storage.persist
    calls = 0

    def flaky(readies: Sequence[Ready]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        real_persist(readies)

    monkeypatch.setattr(writer.storage, "persist", flaky)
    doomed = [Ready(group, vote(1, Ballot(1, 1)), ()), Ready(group, vote(2, Ballot(1, 1)), ())]
    results = await asyncio.gather(*(writer.persist(r) for r in doomed), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert not any(ready.persisted for ready in doomed)
    assert writer.stats.failures == 1

    survivor = Ready(group, vote(1, Ballot(2, 2)), ())
    await writer.persist(survivor)
    assert survivor.persisted
    state = await writer.run(DjangoStorage().load, group)
    assert state.promised == Ballot(2, 2)


async def test_close_flushes_then_refuses(writer: GroupCommitWriter) -> None:
    group = next(_group_ids)
    pending = asyncio.ensure_future(writer.persist(Ready(group, vote(1, Ballot(3, 1)), ())))
    await asyncio.sleep(0)
    await writer.close()
    await pending
    assert writer.closed
    with pytest.raises(WriterClosedError):
        await writer.persist(Ready(group, vote(2, Ballot(3, 1)), ()))
    with pytest.raises(WriterClosedError):
        await writer.run(print)
    await writer.close()  # idempotent


async def test_invalid_batch_size() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitWriter(DjangoStorage(), max_batch=0)
