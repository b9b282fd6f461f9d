"""A turn of the runtime's loop that holds both votes and applications writes them in one
transaction, then lets the messages go. These tests run a real one-node cluster in this process
(``tests/fixtures/loop_node.py``) under concurrent load and check that applications stay in log
order without gaps, that every result is right, and that a failed application stops the node with
nothing applied after it and none of its turn's votes sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.db import connection, connections, transaction

from consensus.runtime import PaxosNode, SubmitError
from kvstore.models import Entry
from tests.fixtures.loop_node import LoopNode

pytestmark = pytest.mark.django_db(transaction=True)


def put(key: str, value: str) -> str:
    return json.dumps({"op": "put", "key": key, "value": value})


def record_applications(
    node: PaxosNode, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[int, int, int]]:
    """(group, first instance, last instance) of every application, in order."""
    calls: list[tuple[int, int, int]] = []
    original = node.applier.apply_groups

    def apply_groups(applying: Any, **kwargs: Any) -> Any:
        calls.extend((group_id, e[0].instance, e[-1].instance) for group_id, e in applying)
        return original(applying, **kwargs)

    monkeypatch.setattr(node.applier, "apply_groups", apply_groups)
    return calls


class TurnsWithVotesAndApplications:
    """Wraps ``node._commit``: counts the turns that hold votes and applications, and says
    whether the transaction the writer thread runs now is one of them (``active``, read on that
    thread by the state machine code it calls)."""

    def __init__(self, node: PaxosNode, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.active = False
        self.readies: list[Any] = []
        original = node._commit

        def commit(readies: list[Any], applying: list[Any], on_applied: Any) -> None:
            both = bool(applying) and any(ready.persist.must_sync for ready in readies)
            self.count += both
            self.active, self.readies = both, readies
            try:
                original(readies, applying, on_applied)
            finally:
                self.active = False

        monkeypatch.setattr(node, "_commit", commit)


async def submit_many(node: PaxosNode, count: int, prefix: str) -> list[Any]:
    """``count`` puts submitted at a steady pace whatever the answers (so new commands arrive
    while earlier ones are applied: turns hold votes and applications), outcomes by index."""

    async def one(index: int) -> Any:
        try:
            return await node.submit(1 + index % 2, put(f"{prefix}{index % 50}", str(index)))
        except Exception as error:  # noqa: BLE001 - collected for the test to look at
            return error

    for group in (1, 2):  # both groups have a leader before the clock starts
        await node.submit(group, put(f"{prefix}warm", "0"))
    tasks = []
    for index in range(count):
        tasks.append(asyncio.ensure_future(one(index)))
        if index % 2 == 1:
            await asyncio.sleep(0.001)
    return list(await asyncio.gather(*tasks))


def test_turns_with_votes_and_applications_apply_in_log_order_with_every_result(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = loop_node.node
    calls = record_applications(node, monkeypatch)
    turns = TurnsWithVotesAndApplications(node, monkeypatch)
    outcomes = loop_node.call(submit_many(node, 2000, "k"), timeout=60)

    assert not [o for o in outcomes if isinstance(o, BaseException)]
    assert turns.count, "no turn held votes and applications together: the test missed its case"
    for group in (1, 2):
        instances = [(first, last) for g, first, last in calls if g == group]
        assert instances[0][0] == 1
        for (_, before), (after, _) in zip(instances, instances[1:], strict=False):
            assert after == before + 1, f"group {group}: applications out of order {instances}"
    # the last write of each key (in log order) is what the store holds. Two writes of a key can
    # share an instance (one batch); the leader batches in submission order, so of those the
    # later index is the later write: >=, not >.
    last: dict[tuple[int, str], tuple[int, str]] = {(1, "kwarm"): (0, "0"), (2, "kwarm"): (0, "0")}
    for index, outcome in enumerate(outcomes):
        key = (1 + index % 2, f"k{index % 50}")
        if key not in last or outcome.instance >= last[key][0]:
            last[key] = (outcome.instance, str(index))
    for group in (1, 2):  # clients are answered before the commit; the applied index follows
        chosen = node.replicas[group].chosen_upto
        loop_node.call(asyncio.wait_for(node._applied_to(group, chosen), 10))
    stored = {(e.group_id, e.key): e.value for e in Entry.objects.all()}
    assert stored == {key: value for key, (_, value) in last.items()}


def test_a_batch_the_state_machine_fails_is_applied_again_and_the_node_goes_on(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turns apply without savepoints; one whose ``apply_batch`` raises is rolled back whole
    (votes included) and applied again under savepoints, the failing batch command by command.
    Nothing is lost or applied twice, and the node keeps serving."""
    node = loop_node.node
    machine = node.machines[2]
    apply_batch = machine.apply_batch
    failed: list[int] = []

    def failing_on_boom(commands: Any) -> Any:
        if any('"boom"' in command for command, _context in commands):
            failed.append(len(commands))
            raise RuntimeError("boom")
        return apply_batch(commands)

    monkeypatch.setattr(machine, "apply_batch", failing_on_boom)

    async def run() -> list[Any]:
        background = asyncio.ensure_future(submit_many(node, 400, "b"))
        await asyncio.sleep(0.05)
        boom = await node.submit(2, put("boom", "1"))
        return [boom, *await background]

    outcomes = loop_node.call(run(), timeout=60)
    assert len(failed) == 2, failed  # the unguarded attempt, then the guarded one
    assert not [o for o in outcomes if isinstance(o, BaseException)]
    assert outcomes[0].result == {"key": "boom", "value": "1"}
    stored = dict(Entry.objects.filter(group_id=2).values_list("key", "value"))
    assert stored["boom"] == "1"
    after = loop_node.call(node.submit(2, put("after", "2")))
    assert after.result == {"key": "after", "value": "2"}


def test_a_failed_application_stops_the_node_and_nothing_is_applied_after_it(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = loop_node.node
    calls = record_applications(node, monkeypatch)
    recorded_apply = node.applier.apply_groups
    failed: list[int] = []
    turns = TurnsWithVotesAndApplications(node, monkeypatch)
    failed_readies: list[Any] = []
    released: list[Any] = []
    release = node._release

    def record_release(readies: list[Any]) -> None:
        released.extend(ready for _replica, ready in readies)
        release(readies)

    monkeypatch.setattr(node, "_release", record_release)

    def apply_groups(applying: Any, **kwargs: Any) -> Any:
        if failed:
            raise AssertionError("an application ran after one failed")
        if len(calls) >= 5 and turns.active:
            # a turn that holds votes too: they are in the transaction that fails
            failed.append(applying[0][1][0].instance)
            failed_readies.extend(turns.readies)
            raise OSError("disk gone")
        return recorded_apply(applying, **kwargs)

    monkeypatch.setattr(node.applier, "apply_groups", apply_groups)
    outcomes = loop_node.call(submit_many(node, 3000, "f"), timeout=60)

    assert failed, "the injected failure never happened"
    assert not [r for r in failed_readies if any(r is s for s in released)], (
        "votes of the failed transaction were sent"
    )
    with pytest.raises(SubmitError, match="stopped after a storage failure"):
        loop_node.call(node.submit(1, put("late", "1")))
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert errors and all(isinstance(e, SubmitError) for e in errors), set(map(type, errors))
    loop_task = node._tasks[0]
    loop_node.call(asyncio.wait([loop_task], timeout=10))
    assert loop_task.done()
    assert isinstance(loop_task.exception(), OSError), loop_task.exception()
    # and the writer thread refuses any later application, whatever path it comes by
    with pytest.raises(RuntimeError, match="earlier application failed"):
        loop_node.call(node._writer.run(node._apply_all, [(1, ())], lambda _: None, guarded=False))


def statements_of_puts(loop_node: LoopNode, puts: int) -> list[str]:
    """The SQL the writer thread's connection ran while ``puts`` KV puts went through."""
    node = loop_node.node
    statements: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    def wrappers() -> list[Any]:  # the writer thread's connection: look it up there
        return connection.execute_wrappers

    writer = node._writer
    assert writer is not None
    loop_node.call(writer.run(lambda: wrappers().append(record)))
    try:
        for n in range(puts):
            loop_node.call(node.submit(1, put(f"k{n}", "v")))
    finally:
        loop_node.call(writer.run(lambda: wrappers().remove(record)))
    assert statements, "no statement went through Django's cursor: the test sees nothing"
    return statements


@pytest.mark.postgres  # where a savepoint costs round trips to the server
def test_a_turn_takes_no_savepoint_of_its_own(loop_node: LoopNode) -> None:
    """A turn is one transaction, with no savepoint inside it (on PostgreSQL a savepoint cost
    two more round trips to the server per turn, when the relaxed turn held the transaction)."""
    statements = statements_of_puts(loop_node, 5)
    assert not [sql for sql in statements if "SAVEPOINT" in sql.upper()], statements


@pytest.mark.postgres
def test_every_turn_on_postgresql_waits_for_the_disk(loop_node: LoopNode) -> None:
    """A vote-free turn on PostgreSQL is not relaxed (``synchronous_commit`` stays on): the
    server can crash and restart under a running node and take back unflushed commits, which
    the node's memory counts as applied (a review reproduced reads of rolled-back rows)."""
    statements = statements_of_puts(loop_node, 5)
    assert not [sql for sql in statements if "synchronous_commit" in sql.lower()], statements
    storage = loop_node.node.storage

    def setting_in_a_relaxed_transaction() -> str:
        with (
            storage.relaxed_durability(),
            transaction.atomic(using=storage.using),
            connections[storage.using].cursor() as cursor,
        ):
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    writer = loop_node.node._writer
    assert writer is not None
    assert loop_node.call(writer.run(setting_in_a_relaxed_transaction)) == "on"


def durability_of_turns(loop_node: LoopNode, puts: int) -> list[tuple[bool, str]]:
    """For each turn that wrote while ``puts`` KV puts went through: whether it held votes, and
    how durable its commit was going to be (SQLite's ``synchronous``, PostgreSQL's
    ``synchronous_commit``), read inside its transaction on the writer thread."""
    storage = loop_node.node.storage
    turns: list[tuple[bool, str]] = []
    persist = storage.persist

    def recording(readies: Any) -> None:
        votes = any(ready.persist.must_sync for ready in readies)
        sql = "PRAGMA synchronous" if connection.vendor == "sqlite" else "SHOW synchronous_commit"
        with connections[storage.using].cursor() as cursor:
            cursor.execute(sql)
            turns.append((votes, str(cursor.fetchone()[0])))
        persist(readies)

    storage.persist = recording  # type: ignore[method-assign]
    try:
        for n in range(puts):
            loop_node.call(loop_node.node.submit(1, put(f"k{n}", "v")))
    finally:
        del storage.persist
    assert any(votes for votes, _ in turns), f"no turn held a vote: the test sees nothing {turns}"
    return turns


def test_a_turn_with_votes_waits_for_the_disk(loop_node: LoopNode) -> None:
    """Votes are durable before their messages leave (DESIGN §4): a turn that holds any commits
    with SQLite's ``synchronous=FULL`` (2) or PostgreSQL's ``synchronous_commit=on``. A kill -9
    test cannot see this (the OS keeps the page cache): only the setting at commit time can."""
    turns = durability_of_turns(loop_node, 5)
    durable = "2" if connection.vendor == "sqlite" else "on"
    assert all(setting == durable for votes, setting in turns if votes), turns
