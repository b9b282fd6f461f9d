"""What a node refuses to start with: a config that changes what its database's history depends
on (``DjangoStorage.sync_config``, run by ``PaxosNode.start``).

- A group's state machine, once the group has a log here: the nodes that applied it keep the
  state the old machine built, while a node that rebuilds would replay the same log through the
  new machine, and the replicas would answer differently (a key found on some nodes, 404 on
  others). A group without history may change machine (a typo fixed before first use).
- The node list (its ids), once this database voted: membership changes are not supported, and a
  majority of the new list need not overlap one of the old (a value chosen by nodes 3, 4, 5 of
  five is unseen by nodes 1, 2 of three). A node's host and port may change; a database without
  votes (a first start with a mistaken config) is re-synced.

Runs on SQLite by default and on PostgreSQL with ``DATABASE_URL=postgres://...`` (the subprocess
test always runs a node on its own SQLite file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from consensus.config import GroupSpec, NodeAddress, write_demo_config
from consensus.core.ballot import Ballot
from consensus.core.messages import ChosenEntry, Command
from consensus.core.ready import AcceptedWrite, Persist
from consensus.models import Group, Node
from consensus.registry import registry
from consensus.runtime.node import PaxosNode
from consensus.storage.store import ConfigChangeError, DjangoStorage
from tests.fixtures.loop_node import one_node_config
from tests.fixtures.ports import free_port_block
from tests.fixtures.procs import clean_env, run_manage

PUT = '{"type": "put", "key": "k", "value": "v"}'

MACHINE_CHANGE = (
    'the config changes the state machine of group 1 from "kv" to "log", but the group has a log '
    "on this node: a group's state machine cannot change once it has a log (a node that rebuilds "
    "would replay it through the new machine and answer differently from the others); put back "
    '"stateMachine": "kv" for group 1, or use a new group id for "log"'
)


def node_list_change(stored: str, configured: str) -> str:
    return (
        f"the config lists nodes {configured}, but this database has voted in a cluster of nodes "
        f"{stored}: changing the node list is not supported (a majority of the new list need not "
        "overlap one of the old, and chosen values could be lost); start the node with nodes "
        f"{stored} again (a node's host and port may change, not its id), or start a new cluster "
        "with new databases"
    )


def nodes(*ids: int, port: int = 33333) -> list[NodeAddress]:
    return [NodeAddress(node_id, "127.0.0.1", port + node_id) for node_id in ids]


def stored_nodes() -> list[tuple[int, str, int]]:
    return list(Node.objects.order_by("node_id").values_list("node_id", "host", "port"))


def machine_of(group_id: int) -> str:
    return Group.objects.get(group_id=group_id).state_machine


def vote(storage: DjangoStorage, group_id: int) -> None:
    """An accepted value in ``group_id``: an instance row, nothing chosen or applied."""
    write = AcceptedWrite(1, Ballot(1, 1), (Command("r1", PUT),))
    storage.persist_writes([(group_id, Persist(accepted=(write,)))])


def promise(storage: DjangoStorage, group_id: int) -> None:
    storage.persist_writes([(group_id, Persist(promised=Ballot(3, 2)))])


def choose_and_apply(storage: DjangoStorage, group_id: int) -> None:
    """What a node that served a write leaves: a chosen instance, applied."""
    entry = ChosenEntry(1, (Command("r1", PUT),))
    storage.persist_writes([(group_id, Persist(chosen=(entry,)))])
    storage.set_applied_index(group_id, 1)


def applied_only(storage: DjangoStorage, group_id: int) -> None:
    """An applied index without instance rows (as after log compaction would leave it)."""
    storage.set_applied_index(group_id, 5)


#
# A group's state machine
#


@pytest.mark.django_db
@pytest.mark.parametrize("history", [vote, choose_and_apply, applied_only])
def test_a_group_with_history_cannot_change_its_state_machine(history) -> None:
    storage = DjangoStorage()
    storage.ensure_groups([GroupSpec(1, "kv")])
    history(storage, 1)
    with pytest.raises(ConfigChangeError) as refused:
        storage.ensure_groups([GroupSpec(1, "log")])
    assert str(refused.value) == MACHINE_CHANGE
    assert machine_of(1) == "kv"
    storage.ensure_groups([GroupSpec(1, "kv")])  # the old name again: starts as before


@pytest.mark.django_db
def test_a_group_without_history_may_change_its_state_machine() -> None:
    """A typo fixed before first use; another group's log does not stand in the way, nor does a
    promise (it orders ballots, it is no log)."""
    storage = DjangoStorage()
    storage.ensure_groups([GroupSpec(1, "kv"), GroupSpec(2, "counter")])
    choose_and_apply(storage, 1)
    promise(storage, 2)
    storage.ensure_groups([GroupSpec(1, "kv"), GroupSpec(2, "log")])
    assert (machine_of(1), machine_of(2)) == ("kv", "log")


@pytest.mark.django_db
def test_every_group_that_changed_is_named_and_nothing_is_written() -> None:
    storage = DjangoStorage()
    storage.ensure_groups([GroupSpec(1, "kv"), GroupSpec(2, "kv"), GroupSpec(3, "kv")])
    vote(storage, 1)
    applied_only(storage, 3)
    with pytest.raises(ConfigChangeError) as refused:
        storage.ensure_groups([GroupSpec(1, "log"), GroupSpec(2, "log"), GroupSpec(3, "counter")])
    assert str(refused.value).startswith(
        'the config changes the state machine of group 1 from "kv" to "log" and of group 3 from '
        '"kv" to "counter", but groups 1, 3 have a log on this node:'
    )
    assert str(refused.value).endswith(
        "put back their old state machines, or use new group ids for the new ones"
    )
    assert [machine_of(group_id) for group_id in (1, 2, 3)] == ["kv", "kv", "kv"]


#
# The node list
#


@pytest.mark.django_db
@pytest.mark.parametrize("votes", [vote, promise, choose_and_apply])
@pytest.mark.parametrize(
    ("before", "after", "stored", "configured"),
    [
        ((1, 2, 3), (1, 2, 3, 4, 5), "1, 2, 3", "1, 2, 3, 4, 5"),
        ((1, 2, 3, 4, 5), (1, 2, 3), "1, 2, 3, 4, 5", "1, 2, 3"),
    ],
    ids=["3-to-5", "5-to-3"],
)
def test_the_node_list_cannot_change_once_the_database_voted(
    votes, before: Sequence[int], after: Sequence[int], stored: str, configured: str
) -> None:
    storage = DjangoStorage()
    storage.sync_config([GroupSpec(1, "kv")], nodes(*before))
    votes(storage, 1)
    with pytest.raises(ConfigChangeError) as refused:
        storage.sync_nodes(nodes(*after))
    assert str(refused.value) == node_list_change(stored, configured)
    assert stored_nodes() == [(node.node_id, node.host, node.port) for node in nodes(*before)]


@pytest.mark.django_db
def test_a_node_may_move_to_another_host_and_port() -> None:
    storage = DjangoStorage()
    storage.sync_config([GroupSpec(1, "kv")], nodes(1, 2, 3))
    choose_and_apply(storage, 1)
    moved = [NodeAddress(1, "10.0.0.1", 4000), *nodes(2, 3, port=5000)]
    storage.sync_nodes(moved)
    assert stored_nodes() == [(1, "10.0.0.1", 4000), (2, "127.0.0.1", 5002), (3, "127.0.0.1", 5003)]


@pytest.mark.django_db
def test_a_database_without_votes_takes_the_new_node_list() -> None:
    """A first start with a mistaken config, fixed before anything was voted."""
    storage = DjangoStorage()
    storage.sync_config([GroupSpec(1, "kv")], nodes(1, 2, 3, 4, 5))
    storage.sync_nodes(nodes(1, 2, 3))
    assert [row[0] for row in stored_nodes()] == [1, 2, 3]


@pytest.mark.django_db
def test_sync_config_refuses_before_writing_anything() -> None:
    """Both changed at once: the node list is named (it concerns every group), and neither the
    new group nor the new machine is stored."""
    storage = DjangoStorage()
    storage.sync_config([GroupSpec(1, "kv"), GroupSpec(2, "kv")], nodes(1, 2, 3))
    vote(storage, 1)
    with pytest.raises(ConfigChangeError, match="^the config lists nodes 1, 2, 3, 4, 5, but"):
        storage.sync_config(
            [GroupSpec(1, "log"), GroupSpec(2, "log"), GroupSpec(3, "kv")], nodes(1, 2, 3, 4, 5)
        )
    assert list(Group.objects.order_by("group_id").values_list("group_id", "state_machine")) == [
        (1, "kv"),
        (2, "kv"),
    ]
    assert [row[0] for row in stored_nodes()] == [1, 2, 3]


#
# At start
#


async def start_and_stop(config, machines) -> None:
    node = PaxosNode(config, machines, tick_ms=10)  # on the loop: it makes asyncio primitives
    try:
        await node.start()
    finally:
        await node.stop()


@pytest.mark.django_db(transaction=True)
def test_the_node_refuses_to_start_with_a_changed_machine_or_node_list(tmp_path: Path) -> None:
    """``PaxosNode.start`` raises the refusal as a ``CommandError`` naming the node, which
    ``runpaxos`` prints as its one line (the storage runs on the node's writer thread)."""
    config = one_node_config(tmp_path, groups=(GroupSpec(1, "kv"),))
    storage = DjangoStorage()
    storage.sync_config(config.groups, config.nodes)
    choose_and_apply(storage, 1)

    changed = dataclasses.replace(config, groups=(GroupSpec(1, "log"),))
    with pytest.raises(CommandError) as refused:
        asyncio.run(start_and_stop(changed, {1: registry.create("log", 1)}))
    assert str(refused.value) == f"node 1: {MACHINE_CHANGE}"

    grown = dataclasses.replace(config, nodes=(*config.nodes, *nodes(2, 3)))
    with pytest.raises(CommandError) as refused:
        asyncio.run(start_and_stop(grown, {1: registry.create("kv", 1)}))
    assert str(refused.value) == f"node 1: {node_list_change('1', '1, 2, 3')}"
    assert machine_of(1) == "kv" and [row[0] for row in stored_nodes()] == [1]


#
# runpaxos
#

WRITE_AS_THE_NODE = """
from django.conf import settings
from django.core.management import call_command
from consensus.core.messages import ChosenEntry, Command
from consensus.core.ready import Persist
from consensus.storage.identity import claim_database
from consensus.storage.store import DjangoStorage
call_command("migrate", verbosity=0)
config = settings.PAXOS_CLUSTER
claim_database(config.my_id)
storage = DjangoStorage()
storage.sync_config(config.groups, config.nodes)
put = Command("r1", '{"type": "put", "key": "k", "value": "v"}')
storage.persist_writes([(1, Persist(chosen=(ChosenEntry(1, (put,)),)))])
storage.set_applied_index(1, 1)
"""


def test_runpaxos_refuses_a_changed_machine_in_one_line(tmp_path: Path) -> None:
    """A one-node cluster whose group 1 ("kv", the default of a bare id) has a chosen, applied
    write; then the config names "log" for it: ``runpaxos`` exits 1, and its last line is the
    refusal. The node's database keeps "kv"."""
    path = write_demo_config(tmp_path, nodes=1, base_port=free_port_block(1), groups=(1,))
    node_env = clean_env() | {"PAXOS_CONFIG": str(path), "PAXOS_NODE_ID": "1"}
    wrote = run_manage("shell", "-c", WRITE_AS_THE_NODE, env=node_env)
    assert wrote.returncode == 0, wrote.stderr

    comment, document = path.read_text().split("\n", 1)
    changed = json.loads(document) | {"groups": [{"id": 1, "stateMachine": "log"}]}
    path.write_text(f"{comment}\n{json.dumps(changed)}")
    # seconds when refused; without the check it would serve until the timeout kills it
    result = run_manage(
        "runpaxos", "--config", str(path), "--node", "1", env=clean_env(), timeout=30
    )

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"CommandError: node 1: {MACHINE_CHANGE}"
    assert "Traceback" not in result.stderr, result.stderr
    with sqlite3.connect(tmp_path / "dataDir" / "node1.sqlite3") as database:
        rows = database.execute("SELECT group_id, state_machine FROM consensus_group").fetchall()
    assert rows == [(1, "kv")]
