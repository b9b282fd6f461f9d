"""A database that fails under a state machine stops the node; the error is never a result.

A command's error is its result on every node only when every node meets it (consensus/storage/
failures.py). A full disk or a cancelled statement is this node's alone: stored as the result,
it would be answered to the client, kept for the request id's retries, and the applied index
would move past a command this node never applied, while the others did. On SQLite a full disk
also rolls the whole transaction back behind Django's back, and the rest of the turn committed
statement by statement (an acknowledged put's row lost, its applied index and result kept).
These tests make the database really fail: a full disk on SQLite (``max_page_count``), a
statement timeout on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import psycopg.errors
import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.transaction import TransactionManagementError

from consensus.core import ChosenEntry, Command
from consensus.models import AppliedIndex, Group, RequestResult
from consensus.registry import registry
from consensus.runtime import SubmitError
from consensus.runtime.apply import Applier, with_guard_on_failure
from consensus.statemachine import ApplyContext, StateMachine
from consensus.storage.failures import StorageFailure, is_storage_failure
from kvstore.models import Entry
from tests.fixtures.loop_node import LoopNode, running_node, wait_until_applied

pytestmark = pytest.mark.django_db(transaction=True)


def a_write_the_database_refuses() -> None:
    """A write that this thread's database refuses for reasons of its own, never the command's:
    the disk is full (SQLite), the statement is cancelled (PostgreSQL)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL statement_timeout = 1")
            cursor.execute("SELECT pg_sleep(0.2)")
            return
        values = {}
        for pragma in ("max_page_count", "page_count", "page_size", "freelist_count"):
            cursor.execute(f"PRAGMA {pragma}")
            (values[pragma],) = cursor.fetchone()
        cursor.execute(f"PRAGMA max_page_count={values['page_count']}")  # the disk is full
        # More than the file's free pages hold (earlier tests deleted rows): it must grow.
        size = (values["freelist_count"] + 50) * values["page_size"]
        try:
            cursor.execute(
                "INSERT INTO kvstore_entry (group_id, key, value, instance) VALUES (%s, %s, %s, 0)",
                [99, "big", "x" * size],
            )
        finally:
            cursor.execute(f"PRAGMA max_page_count={values['max_page_count']}")


class SickDatabase(StateMachine):
    """Writes a KV row per command; the command "sick" meets a database that fails."""

    catch: str | None = None

    def apply(self, command: str, context: ApplyContext) -> Any:
        if command == "sick":
            try:
                a_write_the_database_refuses()
            except DatabaseError:
                if self.catch == "and goes on":
                    return "caught"
                if self.catch == "and raises its own":
                    raise ValueError("the command failed") from None
                raise
        Entry.objects.create(
            group_id=self.group_id, key=command, value="1", instance=context.instance
        )
        return "ok"


class CatchesTheError(SickDatabase):
    """Catches the database's error itself and goes on, as a careless state machine would."""

    catch = "and goes on"


class RaisesItsOwnError(SickDatabase):
    """Turns the database's error into a ``ValueError`` of its own."""

    catch = "and raises its own"


def entries(*commands: str) -> tuple[ChosenEntry, ...]:
    return tuple(ChosenEntry(1 + n, (Command(f"r{n}-{c}", c),)) for n, c in enumerate(commands))


@pytest.fixture
def groups() -> None:
    Group.objects.create(group_id=1, state_machine="sick")
    Group.objects.create(group_id=2, state_machine="sick")


def nothing_was_kept() -> None:
    assert not AppliedIndex.objects.exists()
    assert not RequestResult.objects.exists()
    assert not Entry.objects.exists()


@pytest.mark.usefixtures("groups")
@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
@pytest.mark.parametrize("machine", [SickDatabase, CatchesTheError, RaisesItsOwnError])
def test_a_database_that_fails_under_a_state_machine_stops_the_turn_and_keeps_nothing(
    guarded: bool, machine: type[StateMachine]
) -> None:
    """Group 1's put and group 2's failing one in one turn: nothing of the turn may commit,
    neither on the unguarded first attempt nor under savepoints, and there is no second try."""
    applier = Applier({1: machine(1), 2: machine(2)})
    attempts: list[bool] = []
    answered: list[Any] = []

    def attempt(guarded_now: bool) -> None:
        attempts.append(guarded_now)
        with transaction.atomic():
            applier.apply_groups(
                [(1, entries("a", "b")), (2, entries("c", "sick"))],
                on_outcomes=answered.extend,
                guarded=guarded_now or guarded,
            )

    with pytest.raises(StorageFailure, match="group 2: the database"):
        with_guard_on_failure(attempt)
    assert attempts == [False]
    assert answered == [], "no client may hear of a turn that fails"
    nothing_was_kept()


@pytest.mark.usefixtures("groups")
def test_a_state_check_that_meets_a_failing_database_stops_the_turn() -> None:
    class SickState(SickDatabase):
        def state_digest(self) -> str | None:
            a_write_the_database_refuses()
            return "never"

    log = (
        ChosenEntry(1, (Command("a", "a"),)),
        ChosenEntry(2, (Command("paxos:state:2", ""),)),
    )
    applier = Applier({1: SickState(1)})
    failed = "group 1: the database failed while applying a state"
    with pytest.raises(StorageFailure, match=failed), transaction.atomic():
        applier.apply_groups([(1, log)])
    nothing_was_kept()


class ClosesTheConnection(SickDatabase):
    """Closes the driver's connection under Django (the turn's transaction ends with it)."""

    def apply(self, command: str, context: ApplyContext) -> Any:
        if command == "sick":
            connection.connection.close()
            return "closed"
        return super().apply(command, context)


@pytest.mark.usefixtures("groups")
@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
def test_a_state_machine_that_closes_the_connection_stops_the_turn(guarded: bool) -> None:
    """The closed connection is the storage's failure, not a "Cannot operate on a closed
    database" that would become the command's result (the turn's check raised it itself)."""
    applier = Applier({1: ClosesTheConnection(1), 2: ClosesTheConnection(2)})
    attempts: list[bool] = []

    def attempt(guarded_now: bool) -> None:
        attempts.append(guarded_now)
        with transaction.atomic():
            applier.apply_groups(
                [(1, entries("a")), (2, entries("b", "sick"))], guarded=guarded_now or guarded
            )

    failed = "group 2: the database (ended the turn|failed)"
    try:
        with pytest.raises(StorageFailure, match=failed):
            with_guard_on_failure(attempt)
    finally:
        connection.close()  # Django still holds the closed driver connection
    assert attempts == [False]
    nothing_was_kept()


def sqlite_error(statement: str) -> sqlite3.Error:
    database = sqlite3.connect(":memory:")
    database.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    database.execute("INSERT INTO t VALUES (1)")
    try:
        database.execute(statement)
    except sqlite3.Error as error:
        return error
    raise AssertionError(f"{statement} did not fail")


def as_django(driver_error: Exception, django_class: type[Exception]) -> Exception:
    """What Django's ``wrap_database_errors`` raises for ``driver_error``."""
    error = django_class(*driver_error.args)
    error.__cause__ = driver_error
    return error


def interrupted() -> sqlite3.Error:
    database = sqlite3.connect(":memory:")
    database.set_progress_handler(lambda: 1, 1)
    try:
        database.execute("SELECT 1")
    except sqlite3.Error as error:
        return error
    raise AssertionError("not interrupted")


COMMAND_ERRORS = [
    as_django(sqlite_error("SELECT * FROM no_such_table"), OperationalError),
    as_django(sqlite_error("INSERT INTO t VALUES (1)"), IntegrityError),
    as_django(psycopg.errors.UniqueViolation("duplicate key"), IntegrityError),
    as_django(psycopg.errors.DivisionByZero("division by zero"), DatabaseError),
    as_django(psycopg.errors.UndefinedTable("no such table"), DatabaseError),
    as_django(psycopg.errors.RaiseException("raised by a trigger"), DatabaseError),
    IntegrityError("raised by Django itself"),
    DatabaseError("Save with update_fields did not affect any rows."),  # Django's, every node's
    as_django(psycopg.errors.ProgramLimitExceeded("index row requires 9616 bytes"), DatabaseError),
    TransactionManagementError("cannot nest a durable atomic block"),
    ValueError("a bad command"),
    KeyError("key"),
]

STORAGE_ERRORS = [
    as_django(interrupted(), OperationalError),
    as_django(psycopg.errors.DiskFull("could not extend file"), OperationalError),
    as_django(psycopg.errors.QueryCanceled("statement timeout"), OperationalError),
    as_django(psycopg.errors.AdminShutdown("terminating connection"), OperationalError),
    as_django(psycopg.errors.InFailedSqlTransaction("transaction is aborted"), DatabaseError),
    as_django(psycopg.OperationalError("server closed the connection"), OperationalError),
    OperationalError("raised by Django itself"),
    MemoryError(),
]


@pytest.mark.parametrize("error", COMMAND_ERRORS, ids=repr)
def test_errors_every_node_meets_at_the_same_command_are_the_commands(error: Exception) -> None:
    assert not is_storage_failure(error)


@pytest.mark.parametrize("error", STORAGE_ERRORS, ids=repr)
def test_errors_of_this_nodes_database_are_the_storages(error: Exception) -> None:
    assert is_storage_failure(error)


def put(key: str, value: str) -> str:
    return json.dumps({"op": "put", "key": key, "value": value})


def test_a_put_that_meets_a_failing_database_stops_the_node_and_is_applied_after_a_restart(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix: the client got the database's error as a 400, the error was stored as
    the request's result, and the KV row was missing for good on this node."""
    node = loop_node.node
    machine = node.machines[1]
    original = machine.apply_batch
    failed: list[bool] = []

    def apply_batch(commands: Any) -> Any:
        if not failed and any(context.request_id == "req-big" for _c, context in commands):
            failed.append(True)
            a_write_the_database_refuses()
        return original(commands)

    monkeypatch.setattr(machine, "apply_batch", apply_batch)
    loop_node.call(node.submit(1, put("warm", "0")))
    with pytest.raises(SubmitError, match="stopped after a storage failure"):
        loop_node.call(node.submit(1, put("big", "1"), "req-big"))
    assert failed
    assert isinstance(node.failure, StorageFailure), node.failure
    loop_node.call(node.stop())

    machines = {spec.group_id: registry.create("kv", spec.group_id) for spec in node.config.groups}
    with running_node(node.config, machines) as again:
        retry = again.call(again.node.submit(1, put("big", "1"), "req-big"))
        assert retry.result == {"key": "big", "value": "1"}, retry
        wait_until_applied(again.node, retry.instance)
        assert Entry.objects.get(group_id=1, key="big").value == "1"
        stored = RequestResult.objects.get(group_id=1, request_id="req-big").result
        assert json.loads(stored) == {"key": "big", "value": "1"}


async def test_a_start_that_meets_a_failing_database_ends_in_one_line() -> None:
    """The database failing while a node starts (replaying its log into its state machines) is
    a storage failure as after the start: ``runpaxos`` prints one line and exits with status 1
    (it gave a whole traceback from ``manage.py``); other errors go on as they are."""
    from types import SimpleNamespace

    from consensus.management import server

    def failed_start(error: Exception) -> server._Lifecycle:
        node: Any = SimpleNamespace(node_id=3)
        lifecycle = server._Lifecycle(node, None, "127.0.0.1", 1)  # type: ignore[arg-type]
        lifecycle.starting = asyncio.get_running_loop().create_future()
        lifecycle.starting.set_exception(error)
        return lifecycle

    lost = failed_start(OperationalError("server closed the connection unexpectedly"))
    with pytest.raises(server.StorageFailure, match=r"^node 3 stopped after a storage failure"):
        lost.raise_start_failure()
    with pytest.raises(ValueError, match="a bug"):
        failed_start(ValueError("a bug")).raise_start_failure()
