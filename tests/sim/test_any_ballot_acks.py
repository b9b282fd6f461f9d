"""The schedule that makes the ``any-ballot-acks`` mutant choose two values for one instance,
step by step on three replicas. The simulator's ``--scenario stale-acks`` gets to its first
half, a leader applying a value no majority voted for, in a quarter of its 3-node seeds, and
rule 7 of invariants.py catches it there; the second half (the other value chosen) needs the
new leader's Accepts lost as well, which none of its first 300 seeds (3 or 5 nodes) did with
rule 7 turned off.

Real replicas, the core tests' message-list harness, and the Ready loop's eager Accepts: a leader
sends its Accepts before its own vote is written, so a crash in between leaves a peer's vote for
a proposal its proposer forgot."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from consensus.core import Accept, Accepted, Command, Message, Prepare, Replica
from consensus.sim.mutants import MUTANTS
from tests.core.harness import Harness, make_config


def start(cluster: Harness, node_id: int, replica_class: type[Replica]) -> None:
    """(Re)start ``node_id`` on its storage as ``replica_class``."""
    cluster.starts += 1
    cluster.replicas[node_id] = replica_class(
        make_config(node_id, cluster.nodes),
        replace(cluster.storage[node_id].initial_state(), audit=False),
        random.Random(1000 * cluster.starts + node_id),
    )


def values_of_instance_1(cluster: Harness) -> dict[int, list[str]]:
    """What each node applied in instance 1 (nodes that applied nothing yet are left out)."""
    return {
        node_id: [command.payload for command in entries[0].value]
        for node_id, entries in cluster.applied.items()
        if entries
    }


def run_schedule(replica_class: type[Replica]) -> dict[int, list[str]]:
    cluster = Harness()
    for node_id in cluster.replicas:
        start(cluster, node_id, replica_class)
    cluster.elect(1)

    # Node 1 proposes c1 in instance 1 in ballot 1.1. Its Accept reaches node 2 only, and node
    # 1 crashes before its own vote is written: only node 2 holds a vote for c1.
    node_1 = cluster.replicas[1]
    node_1.submit(Command("r-c1", "c1"))
    ready = node_1.ready()
    cluster.in_flight += [m for m in ready.eager_messages if isinstance(m, Accept) and m.dst == 2]
    del cluster.replicas[1]  # the Ready is never persisted
    cluster.stabilize()
    stale = [m for m in cluster.readies[2][-1].messages if isinstance(m, Accepted)]
    assert len(stale) == 1  # node 2's vote in ballot 1.1, on its way to node 1 (held back)

    # Node 1 restarts and leads again in ballot 2.1 with node 3's promise (its Prepare to node 2
    # is lost): nobody it heard voted in instance 1, so its next command goes there.
    start(cluster, 1, replica_class)
    cluster.drop = lambda msg: isinstance(msg, Prepare) and msg.dst == 2
    leader = cluster.elect(1)
    assert leader.ballot.round == 2 and leader._leadership is not None
    assert leader._leadership.next_instance == 1

    # It proposes c3 there; both Accepts are lost, and node 2's old ack of ballot 1.1 arrives.
    cluster.drop = lambda msg: isinstance(msg, Accept)
    cluster.submit(1, "c3")
    cluster.drop = lambda msg: False
    cluster.in_flight += stale
    cluster.stabilize()

    # Node 1 goes down; nodes 2 and 3 elect a leader, whose phase 1 hears of node 2's vote.
    del cluster.replicas[1]
    for _ in range(60):
        cluster.tick_all()
        if any(replica.is_leader() for replica in cluster.replicas.values()):
            break
    cluster.tick_all(3)
    return values_of_instance_1(cluster)


def test_the_real_leader_ignores_an_ack_of_its_earlier_ballot() -> None:
    assert run_schedule(Replica) == {2: ["c1"], 3: ["c1"]}


def test_a_leader_counting_acks_of_any_ballot_chooses_a_second_value() -> None:
    """Node 1 counts node 2's vote for c1 (ballot 1.1) and its own for c3 (ballot 2.1) as a
    majority for c3, and applies it; nodes 2 and 3 then choose c1, which node 2 voted for."""
    assert run_schedule(MUTANTS["any-ballot-acks"].replica_class) == {
        1: ["c3"],
        2: ["c1"],
        3: ["c1"],
    }


@pytest.mark.parametrize("mutant", ["none", "any-ballot-acks"])
def test_without_the_crash_the_stale_ack_is_harmless(mutant: str) -> None:
    """Had node 1's vote for c1 been written, its own promise would have reported it, so it
    proposes c1 again in ballot 2.1: node 2's ack of ballot 1.1 then counts towards the value it
    was for, which two votes of ballot 1.1 had already chosen (``AnyBallotAcksReplica``)."""
    replica_class = MUTANTS[mutant].replica_class
    cluster = Harness()
    for node_id in cluster.replicas:
        start(cluster, node_id, replica_class)
    cluster.elect(1)
    stale: list[Message] = []

    def hold_node_2s_ack(msg: Message) -> bool:
        if isinstance(msg, Accepted) and msg.src == 2:
            stale.append(msg)
            return True
        return isinstance(msg, Accept) and msg.dst == 3

    cluster.drop = hold_node_2s_ack
    cluster.submit(1, "c1")  # node 1's vote is written this time
    cluster.stabilize()
    assert len(stale) == 1
    del cluster.replicas[1]
    start(cluster, 1, replica_class)
    cluster.drop = lambda msg: isinstance(msg, Accept) or (
        isinstance(msg, Prepare) and msg.dst == 2
    )
    leader = cluster.elect(1)  # it re-proposes c1; the Accepts of ballot 2.1 are lost
    assert leader._leadership is not None and leader._leadership.inflight == {
        1: (Command("r-c1", "c1"),)
    }
    cluster.in_flight += stale
    cluster.stabilize()
    # The real leader waits for acks of ballot 2.1; the mutant takes c1 for chosen, which it is.
    assert values_of_instance_1(cluster) == ({} if mutant == "none" else {1: ["c1"]})
