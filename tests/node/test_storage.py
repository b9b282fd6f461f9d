"""DjangoStorage against MemoryStorage: the same Persists must leave the same durable state.

Runs on SQLite by default and on PostgreSQL with ``DATABASE_URL=postgres://...``. The property test
uses transactional tests, so ``on_commit`` fires and the in-memory prefix cache is exercised too,
and compares a fresh storage object (cold load from the database) as well.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.config import MAX_ID, GroupSpec, NodeAddress
from consensus.core.ballot import ZERO_BALLOT, Ballot
from consensus.core.messages import NOOP, ChosenEntry, Command, Value
from consensus.core.ready import AcceptedWrite, Persist, Ready, RebuildWrite
from consensus.core.storage import InitialState, MemoryStorage, StoredInstance
from consensus.models import AcceptorState, AppliedIndex, Group, Instance, Node
from consensus.storage.store import DjangoStorage
from consensus.storage.values import value_from_json, value_to_json

_group_ids = itertools.count(1000)


def fresh_group() -> int:
    """A group id no earlier example used: examples share one database without a flush."""
    return next(_group_ids)


def cmd(request_id: str, payload: str = "p") -> Command:
    return Command(request_id, payload)


def ready(group_id: int, persist: Persist) -> Ready:
    return Ready(group_id, persist, ())


def accept(instance: int, ballot: Ballot, value: Value) -> Persist:
    return Persist(accepted=(AcceptedWrite(instance, ballot, value),))


def choose(instance: int, value: Value) -> Persist:
    return Persist(chosen=(ChosenEntry(instance, value),))


#
# Values
#


@pytest.mark.parametrize(
    "value",
    [
        NOOP,
        (cmd("r1", '{"type": "put", "key": "k", "value": "v"}'),),
        (cmd("", ""), cmd("é漢字", "\x00nul"), cmd("r", "a\ud800b")),
    ],
)
def test_value_json_round_trip(value: Value) -> None:
    assert value_from_json(value_to_json(value)) == value


def test_noop_is_an_empty_list() -> None:
    assert value_to_json(NOOP) == "[]"
    assert value_to_json((cmd("r1", "x"),)) == '[["r1","x"]]'


#
# Semantics, case by case
#


@pytest.mark.django_db
def test_empty_group_loads_the_zero_state() -> None:
    """New storage rebuilds before it votes (core/rebuild.py)."""
    storage = DjangoStorage()
    assert storage.load(fresh_group()) == InitialState(rebuilding=True)


@pytest.mark.django_db
def test_the_largest_ids_the_config_takes_fit_the_database() -> None:
    """config.MAX_ID is what the columns hold (PostgreSQL's ``integer``): a group and a node of
    that id are stored, vote and load; one above it fails here, which is why the config refuses
    it."""
    storage = DjangoStorage()
    storage.ensure_groups([GroupSpec(MAX_ID, "kv")])
    storage.sync_nodes([NodeAddress(MAX_ID, "127.0.0.1", 33333)])
    storage.persist([ready(MAX_ID, accept(1, Ballot(1, MAX_ID), (cmd("a"),)))])
    assert storage.load(MAX_ID).instances == (
        StoredInstance(1, Ballot(1, MAX_ID), (cmd("a"),), False),
    )
    assert Node.objects.get().node_id == MAX_ID


@pytest.mark.django_db
def test_rebuild_progress_survives_a_new_storage_object() -> None:
    group = fresh_group()
    DjangoStorage().persist([ready(group, Persist(Ballot(4, 2), rebuild=RebuildWrite(7)))])
    state = DjangoStorage().load(group)
    assert (state.promised, state.rebuilding, state.rebuild_target) == (Ballot(4, 2), True, 7)
    DjangoStorage().persist([ready(group, Persist(rebuild=RebuildWrite(None)))])
    state = DjangoStorage().load(group)
    assert (state.rebuilding, state.rebuild_target) == (False, None)


@pytest.mark.django_db
def test_promise_and_votes_survive_a_new_storage_object() -> None:
    group = fresh_group()
    DjangoStorage().persist(
        [
            ready(group, Persist(promised=Ballot(3, 2))),
            ready(group, accept(2, Ballot(3, 2), (cmd("a"),))),
        ]
    )
    state = DjangoStorage().load(group)
    assert state.promised == Ballot(3, 2)
    assert state.chosen_upto == 0
    assert state.instances == (StoredInstance(2, Ballot(3, 2), (cmd("a"),), False),)


@pytest.mark.django_db
def test_a_vote_never_unchooses_nor_changes_a_chosen_value() -> None:
    group = fresh_group()
    storage = DjangoStorage()
    storage.persist([ready(group, accept(1, Ballot(1, 1), (cmd("a"),)))])
    storage.persist([ready(group, choose(1, (cmd("a"),)))])
    storage.persist([ready(group, accept(1, Ballot(5, 3), (cmd("other"),)))])
    row = Instance.objects.get(group_id=group, instance=1)
    assert row.chosen
    assert value_from_json(row.value) == (cmd("a"),)
    assert (row.ballot_round, row.ballot_node) == (5, 3)


@pytest.mark.django_db
def test_a_chosen_mark_keeps_the_vote_ballot() -> None:
    group = fresh_group()
    storage = DjangoStorage()
    storage.persist([ready(group, accept(1, Ballot(2, 1), (cmd("a"),)))])
    storage.persist([ready(group, choose(1, (cmd("a"),)))])
    storage.persist([ready(group, choose(2, NOOP))])
    state = storage.load(group)
    assert state.chosen_upto == 2
    assert state.recent_chosen == (ChosenEntry(1, (cmd("a"),)), ChosenEntry(2, NOOP))
    assert Instance.objects.get(group_id=group, instance=1).ballot_label == "2.1"
    assert Instance.objects.get(group_id=group, instance=2).ballot_round is None


@pytest.mark.django_db
def test_chosen_at_is_the_first_time_seen_chosen() -> None:
    group = fresh_group()
    storage = DjangoStorage()
    storage.persist([ready(group, accept(1, Ballot(1, 1), NOOP))])
    assert Instance.objects.get(group_id=group, instance=1).chosen_at is None
    storage.persist([ready(group, choose(1, NOOP))])
    first = Instance.objects.get(group_id=group, instance=1).chosen_at
    assert first is not None
    storage.persist([ready(group, choose(1, NOOP)), ready(group, accept(1, Ballot(2, 2), NOOP))])
    assert Instance.objects.get(group_id=group, instance=1).chosen_at == first


@pytest.mark.django_db
def test_later_ready_in_one_batch_wins() -> None:
    group = fresh_group()
    storage = DjangoStorage()
    storage.persist(
        [
            ready(
                group,
                Persist(
                    promised=Ballot(4, 1), accepted=(AcceptedWrite(1, Ballot(4, 1), (cmd("x"),)),)
                ),
            ),
            ready(
                group,
                Persist(
                    promised=Ballot(6, 2), accepted=(AcceptedWrite(1, Ballot(6, 2), (cmd("y"),)),)
                ),
            ),
        ]
    )
    state = storage.load(group)
    assert state.promised == Ballot(6, 2)
    assert state.instances == (StoredInstance(1, Ballot(6, 2), (cmd("y"),), False),)


@pytest.mark.django_db
def test_one_transaction_for_many_groups() -> None:
    first, second = fresh_group(), fresh_group()
    storage = DjangoStorage()
    storage.persist(
        [
            ready(first, Persist(promised=Ballot(1, 1))),
            ready(second, choose(1, (cmd("b"),))),
            ready(first, choose(1, NOOP)),
        ]
    )
    assert storage.load(first).promised == Ballot(1, 1)
    assert storage.load(first).chosen_upto == 1
    assert storage.load(second).recent_chosen == (ChosenEntry(1, (cmd("b"),)),)
    assert storage.load(second).promised == ZERO_BALLOT


@pytest.mark.django_db
def test_prefix_is_contiguous_and_stored() -> None:
    group = fresh_group()
    storage = DjangoStorage()
    storage.persist([ready(group, choose(instance, NOOP)) for instance in (1, 2, 4, 5)])
    assert storage.chosen_upto(group) == 2
    assert Group.objects.get(group_id=group).chosen_upto == 2
    assert [entry.instance for entry in storage.chosen_values(group, 1, 10)] == [1, 2]
    assert [entry.instance for entry in storage.chosen_values(group, 4, 10)] == [4, 5]
    assert storage.chosen_values(group, 3, 10) == []
    assert storage.chosen_values(group, 0, 10) == []
    assert storage.chosen_values(group, 2, 1) == []
    storage.persist([ready(group, choose(3, NOOP))])
    assert storage.chosen_upto(group) == 5
    assert Group.objects.get(group_id=group).chosen_upto == 5
    assert DjangoStorage().load(group).chosen_upto == 5


@pytest.mark.django_db
def test_stale_stored_prefix_is_extended_on_load() -> None:
    group = fresh_group()
    storage = DjangoStorage()
    storage.persist([ready(group, choose(instance, NOOP)) for instance in (1, 2, 3)])
    Group.objects.filter(group_id=group).update(chosen_upto=1)
    assert DjangoStorage().load(group).chosen_upto == 3
    assert Group.objects.get(group_id=group).chosen_upto == 3


@pytest.mark.django_db
def test_recent_chosen_is_bounded() -> None:
    group = fresh_group()
    storage = DjangoStorage(recent=3)
    storage.persist([ready(group, choose(instance, NOOP)) for instance in range(1, 11)])
    state = storage.load(group)
    assert state.chosen_upto == 10
    assert [entry.instance for entry in state.recent_chosen] == [8, 9, 10]
    assert state.instances == ()


def persist_then_fail(storage: DjangoStorage, calls: Sequence[Sequence[Ready]]) -> None:
    """Persist inside one caller transaction that then fails (an apply error, say)."""
    with transaction.atomic():
        for readies in calls:
            storage.persist(readies)
        raise RuntimeError("rolled back")


@pytest.mark.django_db(transaction=True)
def test_persist_inside_the_callers_transaction() -> None:
    """The runtime persists and applies in one transaction: several persists in one block must
    still add up, and a rolled-back block must leave nothing behind, not even in memory."""
    group = fresh_group()
    storage = DjangoStorage()
    with transaction.atomic():
        storage.persist([ready(group, choose(1, NOOP))])
        storage.persist([ready(group, choose(2, NOOP))])
        assert storage.chosen_upto(group) == 2
    assert storage.load(group).chosen_upto == 2

    with pytest.raises(RuntimeError, match="rolled back"):
        persist_then_fail(
            storage,
            [[ready(group, Persist(promised=Ballot(9, 9)))], [ready(group, choose(3, NOOP))]],
        )
    assert storage.load(group) == InitialState(
        ZERO_BALLOT, 2, (), (ChosenEntry(1, NOOP), ChosenEntry(2, NOOP)), rebuilding=True
    )
    storage.persist([ready(group, choose(4, NOOP)), ready(group, choose(3, NOOP))])
    assert storage.load(group).chosen_upto == 4

    other = fresh_group()
    with pytest.raises(RuntimeError, match="rolled back"):
        persist_then_fail(storage, [[ready(other, Persist(promised=Ballot(1, 1)))]])
    storage.persist([ready(other, Persist(promised=Ballot(2, 1)))])
    assert storage.load(other).promised == Ballot(2, 1)


@pytest.mark.django_db
def test_empty_persists_write_nothing() -> None:
    group = fresh_group()
    DjangoStorage().persist([ready(group, Persist()), ready(group, Persist())])
    assert not Group.objects.filter(group_id=group).exists()


@pytest.mark.django_db
def test_ensure_groups_and_applied_index() -> None:
    group, other = fresh_group(), fresh_group()
    storage = DjangoStorage()
    storage.ensure_groups([group, GroupSpec(other, "counter")])
    storage.ensure_groups([group])
    assert Group.objects.get(group_id=group).state_machine == "kv"
    assert Group.objects.get(group_id=other).state_machine == "counter"
    assert AcceptorState.objects.filter(group_id__in=[group, other]).count() == 2
    assert storage.applied_index(group) == 0
    storage.set_applied_index(group, 7)
    assert storage.applied_index(group) == 7
    assert AppliedIndex.objects.get(group_id=group).applied == 7
    storage.ensure_groups([GroupSpec(other, "kv")])
    assert Group.objects.get(group_id=other).state_machine == "kv"
    assert storage.applied_index(fresh_group()) == 0


@pytest.mark.django_db
def test_sync_nodes_mirrors_the_config() -> None:
    storage = DjangoStorage()
    storage.sync_nodes([NodeAddress(1, "a", 1), NodeAddress(2, "b", 2), NodeAddress(3, "c", 3)])
    storage.sync_nodes([NodeAddress(1, "a", 10), NodeAddress(2, "b", 2)])
    assert list(Node.objects.order_by("node_id").values_list("node_id", "host", "port")) == [
        (1, "a", 10),
        (2, "b", 2),
    ]


@pytest.mark.django_db
def test_model_strings() -> None:
    group = fresh_group()
    DjangoStorage().persist(
        [ready(group, Persist(promised=Ballot(2, 1))), ready(group, choose(1, NOOP))]
    )
    assert str(Group.objects.get(group_id=group)) == f"group {group}"
    assert str(AcceptorState.objects.get(group_id=group)) == f"group {group} promised 2.1"
    assert str(Instance.objects.get(group_id=group)) == f"group {group} instance 1"


#
# Property: any sequence of Persists, in any batching, matches MemoryStorage
#

ballots = st.builds(Ballot, st.integers(1, 4), st.integers(1, 3))
commands = st.builds(Command, st.text(max_size=3), st.text(max_size=5))
values = st.lists(commands, max_size=3).map(tuple)
instance_numbers = st.integers(1, 8)
persists = st.builds(
    Persist,
    st.none() | ballots,
    st.lists(st.builds(AcceptedWrite, instance_numbers, ballots, values), max_size=4).map(tuple),
    st.lists(st.builds(ChosenEntry, instance_numbers, values), max_size=3).map(tuple),
    st.none() | st.builds(RebuildWrite, st.none() | instance_numbers, st.booleans()),
)
batches = st.lists(st.lists(st.tuples(st.integers(0, 1), persists), max_size=4), max_size=6)

RECENT = 3
RANGES = [(1, 9), (0, 4), (2, 6), (5, 8), (7, 3)]


def assert_same_state(storage: DjangoStorage, group: int, memory: MemoryStorage) -> None:
    assert storage.load(group) == memory.initial_state(recent=RECENT)
    for first, last in RANGES:
        assert storage.chosen_values(group, first, last) == memory.chosen_values(first, last)


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches=batches)
def test_matches_memory_storage(batches: Sequence[Sequence[tuple[int, Persist]]]) -> None:
    groups = [fresh_group(), fresh_group()]
    storage = DjangoStorage(recent=RECENT)
    storage.ensure_groups(groups)  # rebuilding in the first example's new database only
    memories = [MemoryStorage(rebuilding=storage.load(group).rebuilding) for group in groups]
    for batch in batches:
        storage.persist([ready(groups[which], persist) for which, persist in batch])
        for which, persist in batch:
            memories[which].apply(persist)
        for group, memory in zip(groups, memories, strict=True):
            assert_same_state(storage, group, memory)
    cold = DjangoStorage(recent=RECENT)
    for group, memory in zip(groups, memories, strict=True):
        assert_same_state(cold, group, memory)
