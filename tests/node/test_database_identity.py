"""Migrations that change what existing rows mean, run against rows written before them; and
the row that says which node a database belongs to."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from consensus.models import AcceptorState, NodeIdentity
from consensus.storage.identity import ForeignDatabaseError, claim_database
from consensus.storage.store import DjangoStorage

BEFORE = [("consensus", "0003_fewer_indexes")]
AFTER = [("consensus", "0004_acceptorstate_rebuilding")]


@pytest.mark.django_db(transaction=True)
def test_0004_keeps_existing_databases_voting_and_new_groups_rebuild() -> None:
    """An upgraded node keeps voting (its database is not new); a group created afterwards,
    like every group of a new database, rebuilds first (consensus/core/rebuild.py)."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    old.get_model("consensus", "Group").objects.create(group_id=7, state_machine="kv")
    old.get_model("consensus", "AcceptorState").objects.create(
        group_id=7, promised_round=3, promised_node=1
    )
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    state = DjangoStorage().load(7)
    assert (state.rebuilding, state.promised.round) == (False, 3)
    DjangoStorage().ensure_groups([8])
    assert AcceptorState.objects.get(group_id=8).rebuilding
    assert DjangoStorage().load(8).rebuilding


@pytest.mark.django_db
def test_a_group_added_to_a_database_rebuilds_too() -> None:
    """The database cannot tell that the node never voted in a group it has no rows for: the
    node may have, on a disk replaced while the group was out of the config (a value chosen by
    it and one other node would then be lost to a leader elected by it and the third)."""
    DjangoStorage().ensure_groups([1, 2])
    DjangoStorage().ensure_groups([1, 2, 3])
    assert [DjangoStorage().load(g).rebuilding for g in (1, 2, 3)] == [True, True, True]


@pytest.mark.django_db
def test_a_database_belongs_to_the_first_node_that_starts_on_it() -> None:
    claim_database(2)
    claim_database(2)  # every later start of the same node
    with pytest.raises(ForeignDatabaseError, match="belongs to node 2 .*not to node 3"):
        claim_database(3)
    assert str(NodeIdentity.objects.get()) == "database of node 2"
