"""A node whose storage is new votes only once it cannot contradict its lost votes
(consensus/core/rebuild.py), rule by rule, and the scenario that makes the rule necessary."""

from __future__ import annotations

import dataclasses
import random

import pytest

from consensus.core import (
    Accept,
    Ballot,
    Heartbeat,
    InitialState,
    MemoryStorage,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    RebuildInfo,
    RebuildQuery,
    RebuildWrite,
    Replica,
    TimeoutNow,
)

from .harness import Harness, drain, make_config


def new_replica(node_id: int = 1, nodes: int = 3, state: InitialState | None = None) -> Replica:
    state = state or InitialState(rebuilding=True)
    return Replica(make_config(node_id, nodes), state, random.Random(0))


def info(
    query: Message, src: int, promised: Ballot, highest: int, chosen_upto: int = 0
) -> RebuildInfo:
    """``src``'s answer to ``query`` (a RebuildQuery the replica sent)."""
    assert isinstance(query, RebuildQuery)
    return RebuildInfo(
        group_id=1,
        src=src,
        dst=1,
        token=query.token,
        promised=promised,
        highest_instance=highest,
        chosen_upto=chosen_upto,
    )


def test_new_storage_asks_every_peer_and_answers_no_vote_request() -> None:
    replica = new_replica()
    sent = drain(replica)
    assert sorted((type(m), m.dst) for m in sent) == [(RebuildQuery, 2), (RebuildQuery, 3)]
    ballot = Ballot(5, 2)
    for msg in (
        Prepare(group_id=1, src=2, dst=1, ballot=ballot, first_instance=1, force=True),
        Accept(group_id=1, src=2, dst=1, ballot=ballot, instance=1, value=(), chosen_upto=0),
        Heartbeat(group_id=1, src=2, dst=1, ballot=ballot, chosen_upto=0, seq=1),
        TimeoutNow(group_id=1, src=2, dst=1, ballot=ballot),
    ):
        replica.step(msg)
        assert drain(replica) == []
    assert replica.leader_id == 2  # it follows (to forward commands) without voting
    replica.step(PreVote(group_id=1, src=3, dst=1, round=9))
    (reply,) = drain(replica)
    assert isinstance(reply, PreVoteReply) and not reply.granted
    replica.tick()
    for _ in range(100):  # never campaigns, and asks again while peers are silent
        replica.tick()
    assert replica.rebuilding and replica.role.value == "follower"


def test_it_waits_for_every_peer_then_promises_the_highest_ballot_and_learns_up_to_the_top() -> (
    None
):
    replica = new_replica(nodes=5)
    query = drain(replica)[0]
    replica.step(info(query, 2, Ballot(0, 0), 0))
    replica.step(info(query, 3, Ballot(0, 0), 0))
    assert drain(replica) == [] and replica.rebuild_target is None  # a majority is not enough
    replica.step(info(query, 4, Ballot(7, 4), 12, chosen_upto=9))
    replica.step(info(query, 5, Ballot(6, 5), 15, chosen_upto=10))
    ready = replica.ready()
    assert ready.persist.promised == Ballot(7, 4)
    assert ready.persist.rebuild == RebuildWrite(15)
    assert replica.rebuilding and replica.rebuild_target == 15


def test_a_new_cluster_votes_once_every_node_answered_nothing_yet() -> None:
    replica = new_replica()
    query = drain(replica)[0]
    replica.step(info(query, 2, Ballot(0, 0), 0))
    replica.step(info(query, 3, Ballot(0, 0), 0))
    ready = replica.ready()
    assert ready.persist.rebuild == RebuildWrite(None)
    assert not replica.rebuilding


def test_a_restart_resumes_from_the_persisted_target() -> None:
    storage = MemoryStorage(rebuilding=True, rebuild_target=2)
    replica = new_replica(state=storage.initial_state())
    assert drain(replica) == []  # no new questions: the answer is on disk
    assert replica.rebuilding and replica.rebuild_target == 2


def test_every_node_reports_its_promise_and_highest_instance() -> None:
    """A leader counts the instance it has just proposed, chosen or not."""
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "a")
    cluster.take(Accept)  # held back: nobody but the leader knows of instance 1 yet
    for node_id, highest in ((1, 1), (2, 0)):
        cluster.replicas[node_id].step(RebuildQuery(group_id=1, src=3, dst=node_id, token=5))
        cluster.process(node_id)
        (answer,) = cluster.take(RebuildInfo)
        assert isinstance(answer, RebuildInfo)
        assert (answer.promised, answer.highest_instance) == (leader.ballot, highest)
        assert answer.token == 5


def lose_a_chosen_vote(rebuild: bool) -> Harness:
    """Instance 1 holds "x", chosen by the votes of nodes 1 and 2 only (node 3 never heard of
    it). Node 2's disk is replaced and node 1 goes down: nodes 2 and 3 are a majority that has
    no record of "x"."""
    cluster = Harness()
    cluster.elect(1)
    cluster.drop = lambda msg: isinstance(msg, Accept) and msg.dst == 3
    cluster.submit(1, "x")
    cluster.stabilize()
    assert cluster.applied_payloads(1) == ["x"]
    assert cluster.storage[3].instances == {}
    cluster.drop = lambda msg: msg.src == 1 or msg.dst == 1
    del cluster.replicas[1]
    cluster.storage[2] = MemoryStorage(rebuilding=rebuild)
    cluster.applied[2] = []
    cluster.start(2)
    cluster.tick_all(60)
    cluster.submit(3, "y")
    cluster.tick_all(60)
    return cluster


def test_without_rebuilding_a_replaced_disk_lets_a_second_value_be_chosen() -> None:
    """The negative control of the next test: the danger is real, and this harness shows it."""
    cluster = lose_a_chosen_vote(rebuild=False)
    assert cluster.applied[3][0].value != cluster.applied[1][0].value
    assert [c.payload for c in cluster.applied[3][0].value] != ["x"]


def test_a_replaced_disk_rebuilds_and_the_chosen_value_survives() -> None:
    cluster = lose_a_chosen_vote(rebuild=True)
    assert cluster.applied[3] == [] and cluster.replicas[2].rebuilding  # waits for node 1
    cluster.drop = lambda msg: False
    cluster.start(1)
    cluster.tick_all(80)
    assert not cluster.replicas[2].rebuilding
    for node_id in (1, 2, 3):
        assert cluster.applied_payloads(node_id)[:2] == ["x", "y"], node_id


@pytest.mark.parametrize("nodes", [1, 2])
def test_small_groups(nodes: int) -> None:
    """A group of one has no one to ask; a group of two asks its one peer."""
    replica = new_replica(nodes=nodes)
    sent = drain(replica)
    if nodes == 2:
        assert replica.rebuilding
        replica.step(info(sent[0], 2, Ballot(3, 2), 0))
        drain(replica)
    assert not replica.rebuilding


def test_an_answer_to_an_earlier_rebuild_does_not_count() -> None:
    """A late copy of an answer to another rebuild (the new cluster's first one, when every
    peer had seen nothing) must not stand for the peer's answer now."""
    replica = new_replica()
    query = drain(replica)[0]
    earlier = RebuildQuery(group_id=1, src=1, dst=2, token=query.token + 1)
    replica.step(info(earlier, 2, Ballot(0, 0), 0))
    replica.step(info(query, 3, Ballot(0, 0), 0))
    assert drain(replica) == [] and replica.rebuilding and replica.rebuild_waiting_for == [2]


def test_a_promise_to_another_campaign_of_the_same_ballot_does_not_count() -> None:
    """A node that lost its storage may campaign again with a ballot it used before: a late
    Promise to the earlier campaign must not count for the new one."""
    replica = Replica(make_config(1, 3), InitialState(), random.Random(0))
    for _ in range(100):
        replica.tick()
        sent = drain(replica)
        if any(isinstance(m, PreVote) for m in sent):
            break
    for node_id in (2, 3):
        replica.step(
            PreVoteReply(group_id=1, src=node_id, dst=1, round=sent[0].round, granted=True)
        )
    prepares = [m for m in drain(replica) if isinstance(m, Prepare)]
    assert prepares and replica.role.value == "candidate"
    prepare = prepares[0]
    stale = Promise(
        group_id=1,
        src=2,
        dst=1,
        ballot=prepare.ballot,
        first_instance=prepare.first_instance,
        chosen_upto=0,
        accepted=(),
        nonce=prepare.nonce + 1,
    )
    replica.step(stale)
    assert replica.role.value == "candidate"
    replica.step(dataclasses.replace(stale, nonce=prepare.nonce))
    assert replica.is_leader()


def test_the_leader_fills_up_to_a_target_nobody_knows_chosen() -> None:
    """Instance 2 holds an old vote of a crashed leader's (on node 1 and node 5) above anything
    the new leader proposes; a follower that lost its disk learns of it as its target. Without
    load nothing would ever choose it: the leader fills the gap with no-ops when asked."""
    cluster = Harness(nodes=5)
    cluster.elect(1)
    cluster.submit(1, "a")
    cluster.tick_all(5)
    cluster.drop = lambda msg: isinstance(msg, Accept) and msg.dst in (2, 3, 4)
    cluster.submit(1, "b")
    cluster.stabilize()
    del cluster.replicas[1]
    cluster.in_flight = []
    cluster.drop = lambda msg: msg.src == 5 or msg.dst == 5
    cluster.tick_all(60)
    (leader,) = [n for n in (2, 3, 4) if cluster.replicas[n].is_leader()]
    cluster.drop = lambda msg: False
    cluster.start(1)
    cluster.tick_all(30)
    assert cluster.replicas[leader].chosen_upto == 1
    victim = {2: 3, 3: 4, 4: 2}[leader]
    del cluster.replicas[victim]
    cluster.storage[victim] = MemoryStorage(rebuilding=True)
    cluster.applied[victim] = []
    cluster.start(victim)
    cluster.tick_all(100)
    rebuilt = cluster.replicas[victim]
    assert not rebuilt.rebuilding and rebuilt.rebuilt_upto == 2
    assert cluster.replicas[leader].chosen_upto >= 2


def test_the_harness_seeds_every_start_of_a_node_differently() -> None:
    """As the runtime and the simulator do: a restarted node must not repeat its nonces."""
    cluster = Harness(nodes=3)
    states = {cluster.replicas[1]._rng.getstate()}  # type: ignore[attr-defined]
    for _ in range(3):
        states.add(cluster.start(1)._rng.getstate())  # type: ignore[attr-defined]
    assert len(states) == 4
