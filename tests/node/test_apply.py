"""The applier: exactly-once by request id, pruning through the log, replay of in-memory state
machines, and state machines that fail."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from consensus.core import ChosenEntry, Command
from consensus.models import AppliedIndex, Group, RequestResult
from consensus.request_ids import stored_id
from consensus.runtime import apply as apply_module
from consensus.runtime.apply import (
    PRUNE_PREFIX,
    Applier,
    UnguardedBatchFailed,
    with_guard_on_failure,
)
from consensus.statemachine import ApplyContext, StateMachine
from kvstore.models import Entry
from tests.fixtures.logs import consensus_logs
from tests.fixtures.statements import traced_statements

pytestmark = pytest.mark.django_db(transaction=True)


class Counter(StateMachine):
    """In memory: counts applications per payload."""

    durable = False

    def __init__(self, group_id: int) -> None:
        super().__init__(group_id)
        self.applied: list[str] = []

    def apply(self, command: str, context: ApplyContext) -> Any:
        self.applied.append(command)
        return len(self.applied)


class BrokenSQL(StateMachine):
    def apply(self, command: str, context: ApplyContext) -> Any:
        if command == "bad":
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")
        return "ok"


class DurableCounter(StateMachine):
    """Counts the commands it applied in a KV row (read, add, write: applying twice shows).
    Its ``apply_batch`` counts the good commands of the batch, then raises if one is "bad"."""

    def _add(self, count: int) -> None:
        row = Entry.objects.filter(group_id=self.group_id, key="count").first()
        if row is None:
            Entry.objects.create(group_id=self.group_id, key="count", value=count, instance=0)
        else:
            row.value = str(int(row.value) + count)
            row.save(update_fields=["value"])

    def apply(self, command: str, context: ApplyContext) -> Any:
        if command == "bad":
            raise RuntimeError("a bad command")
        self._add(1)
        return "ok"

    def apply_batch(self, commands: Any) -> list[Any]:
        self._add(sum(command != "bad" for command, _context in commands))
        if any(command == "bad" for command, _context in commands):
            raise RuntimeError("a bad command in the batch")
        return ["ok"] * len(commands)


def counted(group_id: int) -> int:
    return int(Entry.objects.get(group_id=group_id, key="count").value)


def entry(instance: int, *commands: tuple[str, str]) -> ChosenEntry:
    return ChosenEntry(instance, tuple(Command(rid, payload) for rid, payload in commands))


def apply(applier: Applier, entries: list[ChosenEntry], **options: Any) -> list:
    with transaction.atomic():
        return applier.apply(1, entries, **options)


@pytest.fixture(autouse=True)
def group() -> None:
    Group.objects.create(group_id=1, state_machine="counter")


LOG = [
    entry(1, ("a", "x"), ("b", "y")),
    entry(2, ("a", "x")),  # a retry of "a" chosen again: a duplicate
    entry(3, (f"{PRUNE_PREFIX}1", "2")),  # drop results of instances below 2: "a" and "b"
    entry(4, ("a", "x"), ("c", "z")),  # "a" again, after its result was pruned: applied again
    entry(5, ("c", "z")),  # still remembered: a duplicate
]


def test_a_request_id_chosen_twice_is_applied_once() -> None:
    machine = Counter(1)
    outcomes = apply(Applier({1: machine}), LOG[:2])
    assert machine.applied == ["x", "y"]
    assert [(o.request_id, o.instance, o.duplicate) for o in outcomes] == [
        ("a", 1, False),
        ("b", 1, False),
        ("a", 1, True),
    ]
    assert outcomes[2].result == outcomes[0].result == 1
    assert AppliedIndex.objects.get(group_id=1).applied == 2


TOO_LONG, WITH_NUL = "r" * 300, "a\x00b"


def test_a_chosen_request_id_the_results_table_cannot_hold_is_stored_under_its_digest() -> None:
    """A log that holds such an id (chosen before every way in refused them, or forwarded by a
    peer of an earlier release) must not fail the apply transaction: on PostgreSQL a
    300-character id or a NUL did, on every node at that instance and after every restart."""
    machine = Counter(1)
    outcomes = apply(
        Applier({1: machine}), [entry(1, (TOO_LONG, "x"), (WITH_NUL, "y"), ("ok", "z"))]
    )
    assert machine.applied == ["x", "y", "z"]
    assert [o.request_id for o in outcomes] == [TOO_LONG, WITH_NUL, "ok"]
    assert sorted(RequestResult.objects.values_list("request_id", flat=True)) == sorted(
        [stored_id(TOO_LONG), stored_id(WITH_NUL), "ok"]
    )
    assert stored_id(TOO_LONG).startswith("paxos:id-hash:") and stored_id("ok") == "ok"


@pytest.mark.parametrize("split", [False, True], ids=["one-turn", "two-turns"])
def test_such_an_id_chosen_twice_is_applied_once_however_the_turns_fall(split: bool) -> None:
    """Nodes batch their applications differently: the decision must not depend on it, or
    their state machines diverge."""
    machine = Counter(1)
    applier = Applier({1: machine})
    log = [entry(1, (TOO_LONG, "x")), entry(2, (TOO_LONG, "x"))]
    outcomes = apply(applier, log[:1]) + apply(applier, log[1:]) if split else apply(applier, log)
    assert machine.applied == ["x"]
    assert [(o.instance, o.duplicate) for o in outcomes] == [(1, False), (1, True)]


def test_pruning_marker_drops_older_results_at_that_point_of_the_log() -> None:
    machine = Counter(1)
    applier = Applier({1: machine})
    for item in LOG:
        apply(applier, [item])
    assert machine.applied == ["x", "y", "x", "z"]
    assert sorted(RequestResult.objects.values_list("request_id", "instance")) == [
        ("a", 4),
        ("c", 4),
    ]


RETRY_AFTER_PRUNING = [
    entry(1, ("a", "x")),
    entry(2, (f"{PRUNE_PREFIX}1", "2")),  # drop the results below instance 2: "a"
    entry(3, ("a", "x")),  # a retry of "a" after its result was pruned: applied again
    entry(4, ("a", "x")),  # a duplicate of instance 3
]


def apply_in_turns(applier: Applier, turns: list[list[ChosenEntry]]) -> None:
    for turn in turns:
        with transaction.atomic():
            applier.apply_groups([(1, turn)])


@pytest.mark.parametrize(
    "turns",
    [
        [[RETRY_AFTER_PRUNING[0]], RETRY_AFTER_PRUNING[1:3], [RETRY_AFTER_PRUNING[3]]],
        [RETRY_AFTER_PRUNING[:3], [RETRY_AFTER_PRUNING[3]]],
        [RETRY_AFTER_PRUNING],
    ],
    ids=["stored-row-pruned-in-the-turn", "row-of-the-same-turn-pruned", "one-turn"],
)
def test_a_marker_and_a_retry_in_one_turn_decide_as_one_instance_per_turn(
    turns: list[list[ChosenEntry]],
) -> None:
    """Nodes batch the same instances into different turns (a leader applies at once, a
    follower's backlog holds several): the results kept must be the same either way, or a
    later retry is applied again on one node and a duplicate on another."""
    machine = Counter(1)
    apply_in_turns(Applier({1: machine}), turns)
    assert machine.applied == ["x", "x"]
    assert list(RequestResult.objects.values_list("request_id", "instance")) == [("a", 3)]
    rebuilt = Counter(1)  # and an in-memory machine's replay at start decides the same
    apply(Applier({1: rebuilt}), RETRY_AFTER_PRUNING, replay_seen={})
    assert rebuilt.applied == machine.applied


def test_replay_takes_the_same_decisions_as_the_first_run() -> None:
    live = Counter(1)
    applier = Applier({1: live})
    for item in LOG:
        apply(applier, [item])
    rebuilt = Counter(1)
    seen: dict[str, int] = {}
    replayer = Applier({1: rebuilt})
    apply(replayer, LOG[:2], replay_seen=seen)  # in chunks, as on start
    apply(replayer, LOG[2:], replay_seen=seen)
    assert rebuilt.applied == live.applied
    assert RequestResult.objects.count() == 2  # a replay writes nothing


class FailsOnBad(Counter):
    def apply(self, command: str, context: ApplyContext) -> Any:
        if command == "bad":
            raise ValueError("a bad command")
        return super().apply(command, context)


def test_an_in_memory_machine_whose_command_raises_applies_the_others_once() -> None:
    """Memory cannot roll back: a batch whose third command raises must not apply the first two
    again, which a node applying one instance per turn would not do."""
    log = [entry(1, ("r1", "x")), entry(2, ("r2", "y")), entry(3, ("r3", "bad"), ("r4", "z"))]
    Group.objects.create(group_id=2, state_machine="counter")
    one_turn, per_instance = FailsOnBad(1), FailsOnBad(2)
    outcomes = apply(Applier({1: one_turn}), log)
    for item in log:
        with transaction.atomic():
            Applier({2: per_instance}).apply_groups([(2, [item])])
    assert one_turn.applied == per_instance.applied == ["x", "y", "z"]
    assert [o.result for o in outcomes] == [
        1,
        2,
        {"error": "ValueError: a bad command"},
        3,
    ]


def test_a_database_error_in_a_state_machine_becomes_its_result() -> None:
    applier = Applier({1: BrokenSQL(1)})
    outcomes = apply(applier, [entry(1, ("r1", "good"), ("r2", "bad"), ("r3", "good"))])
    assert [o.result for o in outcomes][0::2] == ["ok", "ok"]
    assert "error" in outcomes[1].result
    assert AppliedIndex.objects.get(group_id=1).applied == 1


def test_several_groups_in_one_go_keep_their_request_ids_apart() -> None:
    """``apply_groups`` (one turn of a node) looks up and records all groups together: a request
    id is per group, and a group given twice is one run in log order."""
    Group.objects.create(group_id=2, state_machine="counter")
    one, two = Counter(1), Counter(2)
    applier = Applier({1: one, 2: two})
    with transaction.atomic():
        applier.apply_groups([(1, [entry(1, ("r", "g1"))])])
    with transaction.atomic():
        outcomes = applier.apply_groups(
            [
                (1, [entry(2, ("r", "g1-again"), ("s", "g1"))]),  # "r" was applied in group 1
                (2, [entry(1, ("r", "g2"))]),  # the same id in group 2 is another command
                (1, [entry(3, ("s", "g1-again"))]),  # group 1 again: "s" is now a duplicate
            ]
        )
    assert one.applied == ["g1", "g1"] and two.applied == ["g2"]
    assert [(o.group_id, o.request_id, o.instance, o.duplicate) for o in outcomes] == [
        (1, "r", 1, True),
        (1, "s", 2, False),
        (1, "s", 2, True),
        (2, "r", 1, False),
    ]
    assert dict(AppliedIndex.objects.values_list("group_id", "applied")) == {1: 3, 2: 1}
    assert sorted(RequestResult.objects.values_list("group_id", "request_id", "instance")) == [
        (1, "r", 1),
        (1, "s", 2),
        (2, "r", 1),
    ]


TURN = [
    (1, [entry(1, ("a", "x"), ("b", "y"))]),
    (2, [entry(1, ("c", "x"), ("d", "bad"), ("e", "y"))]),
]


def test_a_turn_applies_without_savepoints_until_a_state_machine_fails() -> None:
    Group.objects.create(group_id=2, state_machine="counter")
    applier = Applier({1: DurableCounter(1), 2: DurableCounter(2)})
    with traced_statements() as statements, transaction.atomic():
        applier.apply_groups(TURN[:1], guarded=False)
    assert counted(1) == 2
    assert not [sql for sql in statements if "SAVEPOINT" in sql.upper()]
    failing_turn = [(1, [entry(2, ("f", "x"))]), *TURN[1:]]
    with (
        pytest.raises(UnguardedBatchFailed, match="group 2: apply_batch failed"),
        transaction.atomic(),
    ):
        applier.apply_groups(failing_turn, guarded=False)
    assert counted(1) == 2  # the failed turn rolled back, group 1's batch of it too
    assert not Entry.objects.filter(group_id=2).exists()


def test_a_turn_whose_state_machine_failed_is_applied_again_under_savepoints() -> None:
    """The whole transaction goes back (the other group's batch and the turn's own writes
    too), and the second attempt applies each command once: the failing batch one by one."""
    Group.objects.create(group_id=2, state_machine="counter")
    applier = Applier({1: DurableCounter(1), 2: DurableCounter(2)})
    attempts: list[bool] = []

    def attempt(guarded: bool) -> list:
        attempts.append(guarded)
        with transaction.atomic():
            Entry.objects.create(group_id=99, key=f"vote-{guarded}", value="", instance=1)
            return applier.apply_groups(TURN, guarded=guarded)

    outcomes = with_guard_on_failure(attempt)
    assert attempts == [False, True]
    assert (counted(1), counted(2)) == (2, 2)
    assert list(Entry.objects.filter(group_id=99).values_list("key", flat=True)) == ["vote-True"]
    results = {o.request_id: o.result for o in outcomes}
    assert results["d"] == {"error": "RuntimeError: a bad command"}
    assert [results[rid] for rid in "abce"] == ["ok"] * 4
    assert RequestResult.objects.count() == 5
    assert dict(AppliedIndex.objects.values_list("group_id", "applied")) == {1: 1, 2: 1}


def test_a_turn_with_an_in_memory_state_machine_is_always_guarded() -> None:
    """A second attempt would apply the in-memory machine's commands twice (memory does not
    roll back), so such a turn takes the savepoints from the start."""
    Group.objects.create(group_id=2, state_machine="counter")
    in_memory = Counter(1)
    applier = Applier({1: in_memory, 2: DurableCounter(2)})
    with transaction.atomic():
        outcomes = applier.apply_groups(TURN, guarded=False)
    assert in_memory.applied == ["x", "y"]
    assert counted(2) == 2
    assert "error" in {o.request_id: o.result for o in outcomes}["d"]


def test_a_database_error_without_a_savepoint_is_applied_again_under_one() -> None:
    """On PostgreSQL a failed statement aborts the whole transaction: the second attempt runs
    in a new one."""
    applier = Applier({1: BrokenSQL(1)})
    log = [entry(1, ("r1", "good"), ("r2", "bad"), ("r3", "good"))]

    def attempt(guarded: bool) -> list:
        with transaction.atomic():
            return applier.apply_groups([(1, log)], guarded=guarded)

    outcomes = with_guard_on_failure(attempt)
    assert [o.result for o in outcomes][0::2] == ["ok", "ok"]
    assert "error" in outcomes[1].result
    assert AppliedIndex.objects.get(group_id=1).applied == 1


class Odd(StateMachine):
    """In memory: returns what its command names, JSON or not."""

    durable = False

    def apply(self, command: str, context: ApplyContext) -> Any:
        if command == "raise":
            raise RuntimeError("boom")
        return {
            "set": {1, 2},
            "object": object(),
            "big": 2**70,
            "int-keys": {1: "a"},
            "nested": {"accounts": [{"ann": b"5"}]},
        }[command]


def test_a_result_that_is_not_json_becomes_the_same_error_on_every_node() -> None:
    """A set or an object was stored as its str(): an object's differs on every node (its
    address), and the client stream could not send it (the connection stopped answering)."""
    log = [entry(1, ("a", "set"), ("b", "object"), ("c", "nested"))]
    outcomes = apply(Applier({1: Odd(1)}), log)
    kinds = ("a set", "an object", "a bytes in a dict in a list in a dict")  # where it sits
    for outcome, kind in zip(outcomes, kinds, strict=True):
        assert outcome.result == {
            "error": f"the state machine's result ({kind}) is not JSON (return dicts, lists, "
            "strings, numbers, booleans or None; no NaN, no lone surrogates)"
        }
    stored = dict(RequestResult.objects.values_list("request_id", "result"))
    assert json.loads(stored["b"]) == outcomes[1].result  # a retry gets what the first got


def test_a_result_only_json_takes_is_answered_as_stored() -> None:
    outcomes = apply(Applier({1: Odd(1)}), [entry(1, ("a", "big"), ("b", "int-keys"))])
    assert [o.result for o in outcomes] == [2**70, {"1": "a"}]


def test_a_failed_command_is_logged_with_where_it_raised(caplog: pytest.LogCaptureFixture) -> None:
    with consensus_logs(caplog):
        (outcome,) = apply(Applier({1: Odd(1)}), [entry(1, ("a", "raise"))])
    assert outcome.result == {"error": "RuntimeError: boom"}
    assert "test_apply.py:" in caplog.text and "in apply" in caplog.text, caplog.text


def test_a_slow_batch_is_logged_naming_the_state_machine(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_module, "SLOW_APPLY_SECONDS", -1.0)
    with consensus_logs(caplog):
        apply(Applier({1: Counter(1)}), [entry(3, ("a", "x")), entry(4, ("b", "y"))])
    assert "group 1: the state machine" in caplog.text
    assert "to apply 2 command(s) (instances 3..4)" in caplog.text, caplog.text


def test_a_lost_database_connection_is_a_storage_failure_not_a_second_attempt() -> None:
    """PostgreSQL ended the node's connection in the middle of a turn (a database restart): the
    rollback fails, Django drops the connection, and a second attempt would reconnect and go on
    quietly, or the node would stop, depending on the statement the loss struck. It is raised
    as the storage failure it is, every time."""
    attempts: list[bool] = []

    def attempt(guarded: bool) -> None:
        attempts.append(guarded)
        with transaction.atomic():
            Entry.objects.create(group_id=99, key="vote", value="", instance=1)
            connection.close()  # what the lost connection leaves behind
            lost = OperationalError("server closed the connection unexpectedly")
            raise UnguardedBatchFailed("group 1: apply_batch failed") from lost

    with pytest.raises(OperationalError, match="server closed the connection"):
        with_guard_on_failure(attempt)
    assert attempts == [False]
    assert not Entry.objects.filter(group_id=99).exists()
