"""Where the applier checks a state machine's code for storage failures, and what it reports.

``test_storage_failures`` makes the database really fail; these pin, with a stand-in for
``transaction_lost``, the variants of each place user code runs: which exception propagates,
which part of the log it names, whether the turn's transaction is checked after an error, after
success or both, and that the check comes after the block's savepoint was closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from django.db import OperationalError, connection, transaction

from consensus.core import ChosenEntry, Command
from consensus.models import Group
from consensus.runtime import apply as apply_module
from consensus.runtime.apply import Applier, UnguardedBatchFailed
from consensus.statemachine import ApplyContext, StateMachine
from consensus.storage.failures import StorageFailure

pytestmark = pytest.mark.django_db(transaction=True)

LOST = "the database ended the turn's transaction while applying"
FAILED = "the database failed while applying"


class Turn:
    """The stand-in ``transaction_lost``: true once user code "lost" the transaction; records
    the savepoints open at each check."""

    def __init__(self) -> None:
        self.lost = False
        self.savepoints_at_checks: list[int] = []

    def transaction_lost(self, using: str = "default") -> bool:
        self.savepoints_at_checks.append(len(connection.savepoint_ids))
        return self.lost


@pytest.fixture
def turn(monkeypatch: pytest.MonkeyPatch) -> Turn:
    Group.objects.create(group_id=1, state_machine="test")
    stand_in = Turn()
    monkeypatch.setattr(apply_module, "transaction_lost", stand_in.transaction_lost)
    return stand_in


def act(turn: Turn, command: str) -> Any:
    """What a command does: ``lose`` the transaction, raise a ``storage`` error or a ``bad``
    command's one, or both; anything else succeeds."""
    if "lose" in command:
        turn.lost = True
    if "storage" in command:
        raise OperationalError("the disk is full")
    if "bad" in command:
        raise ValueError(command)
    if "stop" in command:
        raise StopIteration
    return command


class Machine(StateMachine):
    durable: ClassVar[bool] = True

    def __init__(self, group_id: int, turn: Turn, batch: str = "ok", state: Any = "s") -> None:
        super().__init__(group_id)
        self.turn, self.batch, self.state = turn, batch, state
        self.applied: list[str] = []

    def apply_batch(self, commands: Sequence[tuple[str, ApplyContext]]) -> list[Any]:
        act(self.turn, self.batch)
        return [self.apply(command, context) for command, context in commands]

    def apply(self, command: str, context: ApplyContext) -> Any:
        self.applied.append(command)
        return act(self.turn, command)

    def state_digest(self) -> str | None:
        return act(self.turn, self.state) if isinstance(self.state, str) else self.state


class InMemory(Machine):
    durable: ClassVar[bool] = False
    apply_batch = StateMachine.apply_batch  # type: ignore[assignment]


def log(*commands: str) -> list[ChosenEntry]:
    return [ChosenEntry(1 + n, (Command(f"r{n}", c),)) for n, c in enumerate(commands)]


def run(machine: StateMachine, entries: list[ChosenEntry], *, guarded: bool = True) -> Any:
    with transaction.atomic():
        return Applier({1: machine}).apply_groups([(1, entries)], guarded=guarded)


def stopped(machine: StateMachine, entries: list[ChosenEntry], **kwargs: Any) -> StorageFailure:
    with pytest.raises(StorageFailure) as raised:
        run(machine, entries, **kwargs)
    return raised.value


@pytest.mark.parametrize("batch", ["bad", "bad lose"])
def test_an_unguarded_batch_that_fails_is_tried_again_whatever_the_transaction(
    turn: Turn, batch: str
) -> None:
    with pytest.raises(UnguardedBatchFailed) as raised:
        run(Machine(1, turn, batch=batch), log("a", "b"), guarded=False)
    assert isinstance(raised.value.__cause__, ValueError)
    assert turn.savepoints_at_checks == []


def test_an_unguarded_batch_that_meets_the_storage_stops(turn: Turn) -> None:
    failure = stopped(Machine(1, turn, batch="storage"), log("a", "b"), guarded=False)
    assert str(failure).startswith(f"group 1: {FAILED} instances 1..2 (OperationalError(")
    assert isinstance(failure.__cause__, OperationalError)


@pytest.mark.parametrize("guarded", [False, True])
def test_a_batch_that_lost_the_transaction_stops(turn: Turn, guarded: bool) -> None:
    failure = stopped(Machine(1, turn, batch="lose"), log("a", "b"), guarded=guarded)
    assert f"group 1: {LOST} instances 1..2 " in str(failure)
    assert failure.__context__ is None
    assert turn.savepoints_at_checks == [0]


def test_a_guarded_batch_that_failed_and_lost_the_transaction_stops(turn: Turn) -> None:
    machine = Machine(1, turn, batch="bad lose")
    failure = stopped(machine, log("a", "b"))
    assert f"group 1: {LOST} instances 1..2 " in str(failure)
    assert isinstance(failure.__context__, ValueError)
    assert turn.savepoints_at_checks == [0], "after the savepoint was rolled back"
    assert machine.applied == [], "before applying one by one"


def test_a_guarded_batch_that_meets_the_storage_stops(turn: Turn) -> None:
    failure = stopped(Machine(1, turn, batch="storage"), log("a", "b"))
    assert str(failure).startswith(f"group 1: {FAILED} instances 1..2 ")
    assert turn.savepoints_at_checks == []


@pytest.mark.parametrize(
    ("command", "message"), [("lose", LOST), ("bad lose", LOST), ("storage", FAILED)]
)
def test_one_by_one_a_durable_machine_stops_at_the_command(
    turn: Turn, command: str, message: str
) -> None:
    machine = Machine(1, turn, batch="bad")
    failure = stopped(machine, log("a", command, "c"))
    assert f"group 1: {message} instance 2 " in str(failure)
    assert machine.applied == ["a", command]
    assert set(turn.savepoints_at_checks) <= {0}


def test_one_by_one_a_durable_machine_is_checked_after_each_command(turn: Turn) -> None:
    outcomes = run(Machine(1, turn, batch="bad"), log("a", "bad", "c"))
    assert [outcome.result for outcome in outcomes] == [
        "a",
        {"error": "ValueError: bad"},
        "c",
    ]
    # After the failed batch, then after each command (the failed one too).
    assert turn.savepoints_at_checks == [0, 0, 0, 0]


@pytest.mark.parametrize("machine", [Machine, InMemory])
def test_a_command_that_raises_stop_iteration_fails_alone(turn: Turn, machine: type) -> None:
    outcomes = run(machine(1, turn, batch="stop"), log("a", "stop", "c"))
    assert [outcome.result for outcome in outcomes] == ["a", {"error": "StopIteration: "}, "c"]


@pytest.mark.parametrize(("command", "message"), [("bad lose", LOST), ("storage", FAILED)])
def test_an_in_memory_machine_that_fails_stops_at_the_command(
    turn: Turn, command: str, message: str
) -> None:
    machine = InMemory(1, turn)
    failure = stopped(machine, log("a", command, "c"))
    assert f"group 1: {message} instance 2 " in str(failure)
    assert machine.applied == ["a", command]


def test_an_in_memory_machine_is_checked_once_for_the_commands_that_succeeded(
    turn: Turn,
) -> None:
    machine = InMemory(1, turn)
    failure = stopped(machine, log("a", "lose", "c"))
    assert f"group 1: {LOST} instances 1..3 " in str(failure)
    assert machine.applied == ["a", "lose", "c"]
    assert turn.savepoints_at_checks == [0]


def state_check(*before: str) -> list[ChosenEntry]:
    return [*log(*before), ChosenEntry(len(before) + 1, (Command("paxos:state:1", ""),))]


@pytest.mark.parametrize("state", ["lose", "bad lose"])
def test_a_state_check_that_lost_the_transaction_stops(turn: Turn, state: str) -> None:
    failure = stopped(Machine(1, turn, state=state), state_check("a"))
    assert f"group 1: {LOST} a state check " in str(failure)
    assert turn.savepoints_at_checks[-1] == 0


def test_a_state_check_that_meets_the_storage_stops(turn: Turn) -> None:
    failure = stopped(Machine(1, turn, state="storage"), state_check("a"))
    assert str(failure).startswith(f"group 1: {FAILED} a state check ")


@pytest.mark.parametrize("state", ["bad", 5])
def test_a_state_check_that_fails_is_not_taken(turn: Turn, state: Any) -> None:
    applier = Applier({1: Machine(1, turn, state=state)})
    with transaction.atomic():
        outcomes = applier.apply_groups([(1, state_check("a"))])
    assert outcomes[-1].result is None
    assert turn.savepoints_at_checks == [0, 0]
    assert 1 in applier.state_seconds
