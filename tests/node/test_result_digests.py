"""Result digests: the same windows of the log give the same digests on every node, however its
turns split the log and across restarts; different results give different ones."""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from consensus.core import ChosenEntry, Command, result_digest
from consensus.core.result_digest import Checkpoint, ResultDigests
from consensus.models import AppliedIndex, Group, RequestResult
from consensus.runtime import apply
from consensus.runtime.apply import STATE_PREFIX, Applier, with_guard_on_failure
from consensus.statemachine import ApplyContext, StateMachine, rows_digest
from kvstore.models import Entry
from kvstore.statemachines import KVStateMachine
from tests.fixtures.logs import consensus_logs

LOG = [
    (instance, [f"r{instance}.{n}".encode() for n in range(instance % 3)])
    for instance in range(1, 31)
]
"""Instances 1..30, with 0, 1 or 2 results each (an empty instance is a no-op)."""


def fed(digests: ResultDigests, log: list[tuple[int, list[bytes]]], group_id: int = 1) -> None:
    digests.feed(
        group_id,
        [instance for instance, _ in log],
        [(instance, text) for instance, texts in log for text in texts],
    )


def in_turns(window: int, cuts: list[int]) -> tuple[list[Checkpoint], int | None]:
    """Feed LOG in turns that end after the instances in ``cuts``."""
    digests = ResultDigests(window)
    start = 0
    for end in [*cuts, len(LOG)]:
        fed(digests, LOG[start:end])
        start = end
    return digests.take_checkpoints(), digests.running(1)


@pytest.mark.parametrize("window", [1, 4, 7, 1000])
def test_the_windows_do_not_depend_on_how_turns_split_the_log(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_digest, "KEEP", 100)  # every window, not the latest 16
    whole = in_turns(window, [])
    rng = random.Random(window)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(LOG)), rng.randint(1, 10)))
        assert in_turns(window, cuts) == whole
    checkpoints, _running = whole
    assert [c.last for c in checkpoints] == list(range(window, 31, window))
    assert all(c.first == c.last - window + 1 for c in checkpoints)
    assert len({c.digest for c in checkpoints}) == len(checkpoints)  # each window its own


def test_a_different_result_or_the_same_results_in_other_instances_change_a_window() -> None:
    base = in_turns(7, [])[0]
    changed = [
        (i, [b"other" if (i, n) == (8, 1) else t for n, t in enumerate(texts)]) for i, texts in LOG
    ]
    moved = [(i, texts + LOG[i][1] if i == 9 else ([] if i == 10 else texts)) for i, texts in LOG]
    for log in (changed, moved):
        digests = ResultDigests(7)
        fed(digests, log)
        other = digests.take_checkpoints()
        assert other[0] == base[0]  # instances 1..7 are the same
        assert other[1].digest != base[1].digest  # instances 8..14 are not
        assert other[2:] == base[2:]  # each window stands on its own


def test_a_restart_resumes_the_window_from_its_stored_digest() -> None:
    first = ResultDigests(7)
    fed(first, LOG[:10])
    stored = first.running(1)
    again = ResultDigests(7)
    again.resume(1, 10, stored, 7)
    fed(again, LOG[10:])
    assert first.take_checkpoints() + again.take_checkpoints() == in_turns(7, [])[0]


@pytest.mark.parametrize(("digest", "window"), [(None, 7), (12345, 5)])
def test_a_window_begun_before_digests_were_recorded_is_not_reported(
    digest: int | None, window: int
) -> None:
    """A database of an earlier release (no digest), or a changed PAXOS_DIGEST_WINDOW: half a
    window's digest would not match the other nodes'."""
    digests = ResultDigests(7)
    digests.resume(1, 10, (8, digest), window)
    fed(digests, LOG[10:])
    assert [c.last for c in digests.take_checkpoints()] == [21, 28]


def test_only_the_latest_windows_of_a_long_catch_up_are_kept() -> None:
    digests = ResultDigests(1)
    fed(digests, LOG)
    fed(digests, LOG[:3], group_id=2)
    kept = digests.take_checkpoints()
    assert [(c.group_id, c.last) for c in kept] == [
        *((1, last) for last in range(15, 31)),
        (2, 1),
        (2, 2),
        (2, 3),
    ]


def test_a_state_check_ends_a_window_early_and_a_restart_keeps_where_it_began() -> None:
    digests = ResultDigests(7)
    digests.feed(1, range(1, 11), [], ends={3, 5})
    assert [(c.first, c.last) for c in digests.take_checkpoints()] == [(1, 3), (4, 5), (6, 7)]
    assert digests.running(1)[0] == 8
    again = ResultDigests(7)
    again.resume(1, 10, digests.running(1), 7)
    again.feed(1, range(11, 15), [])
    digests.feed(1, range(11, 15), [])
    assert again.take_checkpoints() == digests.take_checkpoints() != []


def test_window_zero_digests_nothing() -> None:
    digests = ResultDigests(0)
    fed(digests, LOG)
    assert digests.take_checkpoints() == []


def test_restore_undoes_a_turn() -> None:
    digests = ResultDigests(7)
    fed(digests, LOG[:5])
    saved = digests.save([1, 2])
    fed(digests, LOG[5:20])
    fed(digests, LOG[:7], group_id=2)
    digests.restore(saved)
    fed(digests, LOG[5:])
    assert digests.take_checkpoints() == in_turns(7, [])[0]


# The applier -------------------------------------------------------------------------------


class Raises(StateMachine):
    """Its error differs on every call, as a database's words differ between nodes."""

    durable = False
    calls = 0

    def apply(self, command: str, context: ApplyContext) -> Any:
        Raises.calls += 1
        if command == "bad":
            raise RuntimeError(f"failure number {Raises.calls}")
        return command


def kv_log(instances: range, seed: int = 0) -> list[ChosenEntry]:
    rng = random.Random(seed)
    return [
        ChosenEntry(
            i,
            tuple(
                Command(
                    f"{i}-{n}",
                    json.dumps(
                        {
                            "op": rng.choice(["put", "get"]),
                            "key": f"k{rng.randint(1, 5)}",
                            "value": str(i),
                        }
                    ),
                )
                for n in range(rng.randint(0, 3))
            ),
        )
        for i in instances
    ]


def a_new_database(state_machine: str) -> None:
    """Another node's database: nothing applied, no rows, no stored results."""
    for model in (Entry, RequestResult, AppliedIndex, Group):
        model.objects.all().delete()
    Group.objects.create(group_id=1, state_machine=state_machine)


def applied_in_turns(applier: Applier, log: list[ChosenEntry], turn: int) -> list[Checkpoint]:
    for start in range(0, len(log), turn):
        with transaction.atomic():
            applier.apply_groups([(1, log[start : start + turn])])
    return applier.digests.take_checkpoints()


@pytest.mark.django_db(transaction=True)
def test_the_applier_digests_the_kv_store_alike_in_any_turns_and_across_a_restart() -> None:
    Group.objects.create(group_id=1, state_machine="kv")
    log = kv_log(range(1, 41))
    whole = applied_in_turns(Applier({1: KVStateMachine(1)}, digest_window=8), log, 40)
    assert [c.last for c in whole] == [8, 16, 24, 32, 40]
    a_new_database("kv")
    before = Applier({1: KVStateMachine(1)}, digest_window=8)
    checkpoints = applied_in_turns(before, log[:13], 3)
    row = AppliedIndex.objects.get(group_id=1)
    stored = (row.digest_from, row.digest)
    assert (row.applied, stored, row.digest_window) == (13, before.digests.running(1), 8)
    after = Applier({1: KVStateMachine(1)}, digest_window=8)  # a restart
    after.resume_digest(1, 13)
    checkpoints += applied_in_turns(after, log[13:], 5)
    assert checkpoints == whole


@pytest.mark.django_db(transaction=True)
def test_a_state_that_differs_shows_in_the_window_where_a_result_reads_it() -> None:
    Group.objects.create(group_id=1, state_machine="kv")
    log = kv_log(range(1, 41))
    whole = applied_in_turns(Applier({1: KVStateMachine(1)}, digest_window=8), log, 40)
    a_new_database("kv")
    odd = Applier({1: KVStateMachine(1)}, digest_window=8)
    checkpoints = applied_in_turns(odd, log[:20], 20)
    Entry.objects.filter(group_id=1).update(value="tampered")  # after instance 20
    checkpoints += applied_in_turns(odd, log[20:], 20)
    assert checkpoints[:2] == whole[:2]
    assert checkpoints[2].digest != whole[2].digest  # a get in 21..24 reads a tampered value


@pytest.mark.django_db(transaction=True)
def test_a_failing_command_counts_as_one_token_whatever_its_error_says() -> None:
    Group.objects.create(group_id=1, state_machine="raises")
    log = [ChosenEntry(i, (Command(f"r{i}", "bad" if i % 2 else "ok"),)) for i in range(1, 5)]
    first = applied_in_turns(Applier({1: Raises(1)}, digest_window=4), log, 4)
    a_new_database("raises")
    second = applied_in_turns(Applier({1: Raises(1)}, digest_window=4), log, 4)
    assert first == second and len(first) == 1


@pytest.mark.django_db(transaction=True)
def test_a_turn_applied_again_under_savepoints_is_digested_once() -> None:
    from tests.node.test_apply import DurableCounter

    Group.objects.create(group_id=1, state_machine="counter")
    log = [ChosenEntry(i, (Command(f"r{i}", "bad" if i == 3 else "x"),)) for i in range(1, 5)]
    retried = Applier({1: DurableCounter(1)}, digest_window=4)

    def attempt(guarded: bool) -> None:
        with transaction.atomic():
            retried.apply_groups([(1, log)], guarded=guarded)

    with_guard_on_failure(attempt)
    a_new_database("counter")
    guarded = Applier({1: DurableCounter(1)}, digest_window=4)
    with transaction.atomic():
        guarded.apply_groups([(1, log)], guarded=True)
    assert retried.digests.take_checkpoints() == guarded.digests.take_checkpoints() != []


# State checks ------------------------------------------------------------------------------


def test_rows_digest_ignores_order_and_sees_every_row() -> None:
    rows = [("a", "1"), ("b", "2"), ("c", "3")]
    assert rows_digest(rows) == rows_digest(reversed(rows))
    assert rows_digest(rows).startswith("3 rows ")
    assert rows_digest(rows) != rows_digest([("a", "1"), ("b", "2"), ("c", "4")])
    assert rows_digest(rows) != rows_digest(rows[:2])
    assert rows_digest([("ab", "c")]) != rows_digest([("a", "bc")])
    # what SQLite and PostgreSQL return differently for the same row
    assert rows_digest([(1, True)]) == rows_digest([(1, 1)])
    assert rows_digest([(b"\x01", Decimal("1.5"))]) == rows_digest([("01", "1.5")])


def put(instance: int, key: str, value: str) -> Command:
    return Command(f"put-{instance}-{key}", json.dumps({"op": "put", "key": key, "value": value}))


def check(instance: int) -> Command:
    return Command(f"{STATE_PREFIX}{instance}", "")


PUTS_AND_A_CHECK = [
    ChosenEntry(1, (put(1, "a", "1"),)),
    ChosenEntry(2, (put(2, "b", "2"), check(2), put(2, "a", "changed"))),
    ChosenEntry(3, (put(3, "c", "3"),)),
    ChosenEntry(4, ()),
]


@pytest.mark.django_db(transaction=True)
def test_a_state_check_digests_the_state_at_its_place_in_the_log() -> None:
    Group.objects.create(group_id=1, state_machine="kv")
    applier = Applier({1: KVStateMachine(1)}, digest_window=4)
    with transaction.atomic():
        outcomes = applier.apply_groups([(1, PUTS_AND_A_CHECK)], guarded=False)
    [state] = [o.result for o in outcomes if o.request_id.startswith(STATE_PREFIX)]
    assert state == rows_digest([("a", "1"), ("b", "2")])  # before the put after it
    assert Entry.objects.get(key="a").value == "changed"


@pytest.mark.django_db(transaction=True)
def test_a_state_changed_behind_the_log_shows_only_with_a_state_check() -> None:
    """Puts answer the value they were given: a node whose rows were changed behind Paxos' back
    gives the same results (a negative control: the check is what finds it)."""
    windows = {}
    for checked in (False, True):
        log = (
            PUTS_AND_A_CHECK
            if checked
            else [
                ChosenEntry(
                    e.instance,
                    tuple(c for c in e.value if not c.request_id.startswith(STATE_PREFIX)),
                )
                for e in PUTS_AND_A_CHECK
            ]
        )
        for tampered in (False, True):
            a_new_database("kv")
            applier = Applier({1: KVStateMachine(1)}, digest_window=4)
            with transaction.atomic():
                applier.apply_groups([(1, log[:1])])
            if tampered:
                Entry.objects.filter(key="a").update(value="tampered")
            windows[checked, tampered] = applied_in_turns(applier, log[1:], 3)
    assert windows[False, False] == windows[False, True]
    assert windows[True, False] != windows[True, True]


class DigestRaises(KVStateMachine):
    def state_digest(self) -> str:
        raise RuntimeError("cannot")


class DigestNotText(KVStateMachine):
    def state_digest(self) -> Any:
        return 5


@pytest.mark.parametrize(
    ("machine", "said"),
    [(DigestRaises, "RuntimeError('cannot')"), (DigestNotText, "returned int, not a str")],
)
@pytest.mark.django_db(transaction=True)
def test_a_state_check_that_fails_leaves_its_window_unreported_and_the_turn_goes_on(
    machine: type[KVStateMachine], said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure on one node only (a timeout, memory) must not look like a divergence."""
    Group.objects.create(group_id=1, state_machine="kv")
    applier = Applier({1: machine(1)}, digest_window=2)
    with consensus_logs(caplog), transaction.atomic():
        outcomes = applier.apply_groups([(1, PUTS_AND_A_CHECK)], guarded=False)
    assert [o.result for o in outcomes if o.request_id.startswith(STATE_PREFIX)] == [None]
    assert "state_digest failed" in caplog.text and said in caplog.text
    assert AppliedIndex.objects.get(group_id=1).applied == 4
    assert [c.last for c in applier.digests.take_checkpoints()] == [4]  # not 2


class SlowDigest(KVStateMachine):
    def state_digest(self) -> str:
        time.sleep(0.05)
        return super().state_digest()


@pytest.mark.django_db(transaction=True)
def test_a_slow_state_check_is_timed_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write of the node waits for it: the operator hears of it, and the leader spaces
    its checks by the time it took (``StateChecks``)."""
    monkeypatch.setattr(apply, "SLOW_STATE_SECONDS", 0.02)
    Group.objects.create(group_id=1, state_machine="kv")
    applier = Applier({1: SlowDigest(1)}, digest_window=4)
    with consensus_logs(caplog), transaction.atomic():
        applier.apply_groups([(1, PUTS_AND_A_CHECK)], guarded=False)
    assert applier.state_seconds[1] >= 0.05
    assert "group 1: the state machine's state_digest took " in caplog.text
    assert "this node's writes waited for it" in caplog.text
    assert "under 0.1% of the time" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_state_checks_before_state_checks_from_are_not_taken() -> None:
    """A node catching up skips them (each would scan the whole state): unreported windows."""
    Group.objects.create(group_id=1, state_machine="kv")
    applier = Applier({1: DigestRaises(1)}, digest_window=2)
    applier.state_checks_from[1] = 3
    with transaction.atomic():
        outcomes = applier.apply_groups([(1, PUTS_AND_A_CHECK)], guarded=False)
    assert [o.result for o in outcomes if o.request_id.startswith(STATE_PREFIX)] == [None]
    assert [c.last for c in applier.digests.take_checkpoints()] == [4]


class InMemoryKV(StateMachine):
    durable = False

    def __init__(self, group_id: int) -> None:
        super().__init__(group_id)
        self.data: dict[str, str] = {}

    def apply(self, command: str, context: ApplyContext) -> Any:
        data = json.loads(command)
        if data["op"] == "put":
            self.data[data["key"]] = data["value"]
        return {"value": self.data.get(data["key"])}

    def state_digest(self) -> str:
        return rows_digest(self.data.items())


@pytest.mark.django_db(transaction=True)
def test_an_in_memory_machine_replayed_at_start_digests_its_windows_as_before() -> None:
    """On start an in-memory machine replays the log from instance 1 (``replay_seen``); its
    windows come out as on a node that never stopped, state checks not taken (history)."""
    Group.objects.create(group_id=1, state_machine="memory")
    log = kv_log(range(1, 17))
    log[5] = ChosenEntry(6, (*log[5].value, check(6)))
    ran = applied_in_turns(Applier({1: InMemoryKV(1)}, digest_window=4), log, 3)
    replayed = Applier({1: InMemoryKV(1)}, digest_window=4)
    replayed.resume_digest(1, 0)
    seen: dict[str, int] = {}
    with transaction.atomic():
        replayed.apply(1, log[:10], replay_seen=seen)
    with transaction.atomic():
        replayed.apply_groups([(1, log[10:])])
    again = replayed.digests.take_checkpoints()
    assert [c.last for c in ran] == [4, 6, 8, 12, 16]  # the state check ends a window
    assert [c.last for c in again] == [4, 8, 12, 16]  # 5..6: a state check it did not take
    assert [c for c in ran if c.last != 6] == again
