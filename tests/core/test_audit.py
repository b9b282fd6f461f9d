"""A node restarted on storage older than its own votes (a restored backup) rebuilds before it
votes, when a peer remembers those votes (consensus/core/audit.py); rule by rule, and the
scenario that makes the rule necessary."""

from __future__ import annotations

import copy
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
    RebuildInfo,
    RebuildQuery,
    RebuildWrite,
    Replica,
)
from consensus.core.audit import audit_ticks

from .harness import Harness, drain, make_config


def restarted_replica(state: InitialState, node_id: int = 1) -> Replica:
    return Replica(make_config(node_id, 3), state, random.Random(0))


def answer(query: Message, src: int, seen_promised: Ballot, seen_instance: int) -> RebuildInfo:
    """``src``'s answer to ``query``: it saw the asker promise and vote that much."""
    assert isinstance(query, RebuildQuery)
    return RebuildInfo(
        group_id=1,
        src=src,
        dst=query.src,
        token=query.token,
        promised=Ballot(7, src),
        highest_instance=9,
        chosen_upto=9,
        seen_promised=seen_promised,
        seen_instance=seen_instance,
    )


def voted_storage() -> MemoryStorage:
    """Node 1's storage after it promised node 2's ballot and voted in instances 1 and 2."""
    cluster = Harness()
    cluster.elect(2)
    for payload in ("a", "b"):
        cluster.submit(2, payload)
    cluster.stabilize()
    storage = cluster.storage[1]
    assert storage.initial_state().audit and storage.promised.node_id == 2
    return storage


def test_a_restart_on_its_own_storage_asks_first_and_votes_once_every_peer_answered() -> None:
    storage = voted_storage()
    replica = restarted_replica(storage.initial_state())
    queries = drain(replica)
    assert sorted((type(m), m.dst) for m in queries) == [(RebuildQuery, 2), (RebuildQuery, 3)]
    ballot = Ballot(storage.promised.round + 1, 2)
    for msg in (
        Prepare(group_id=1, src=2, dst=1, ballot=ballot, first_instance=1, force=True),
        Accept(group_id=1, src=2, dst=1, ballot=ballot, instance=3, value=(), chosen_upto=2),
        Heartbeat(group_id=1, src=2, dst=1, ballot=ballot, chosen_upto=2, seq=1),
    ):
        replica.step(msg)
        assert drain(replica) == []  # no vote before the answers: a lost message
    for query in queries:  # the peers saw exactly what the storage holds
        replica.step(answer(query, query.dst, storage.promised, 2))
    assert replica.may_vote and not replica.rebuilding and replica.stale_storage_reason is None
    replica.step(Heartbeat(group_id=1, src=2, dst=1, ballot=ballot, chosen_upto=2, seq=2))
    assert [type(m).__name__ for m in drain(replica)] == ["HeartbeatAck"]


def test_a_peer_that_saw_a_vote_the_storage_lacks_makes_it_rebuild() -> None:
    storage = voted_storage()
    replica = restarted_replica(storage.initial_state())
    queries = drain(replica)
    replica.step(answer(queries[0], queries[0].dst, storage.promised, 3))
    assert replica.rebuilding and not replica.may_vote
    assert replica.stale_storage_reason == (
        f"node {queries[0].dst} saw it vote in instance 3, its database knows instances up to 2"
    )
    # It asks again, as a rebuilding node: every peer must answer this time.
    assert {type(m) for m in drain(replica)} == {RebuildQuery}
    assert replica.rebuild_waiting_for == [2, 3]


def test_the_verdict_is_written_down_and_a_restart_rebuilds_without_asking_again() -> None:
    """Restarted before its rebuild decided, the node must not audit again: the peer that saw
    its votes may have restarted too, and would now answer that it saw nothing."""
    storage = voted_storage()
    replica = restarted_replica(storage.initial_state())
    query = drain(replica)[0]
    replica.step(answer(query, query.dst, storage.promised, 3))
    ready = replica.ready()
    assert ready.persist.rebuild == RebuildWrite(None, started=True) and ready.persist.must_sync
    storage.apply(ready.persist)
    state = storage.initial_state()
    assert state.rebuilding and state.rebuild_target is None and not state.audit
    again = restarted_replica(state)
    assert again.rebuilding and {type(m) for m in drain(again)} == {RebuildQuery}


def test_a_peer_that_saw_a_higher_promise_makes_it_rebuild() -> None:
    storage = voted_storage()
    replica = restarted_replica(storage.initial_state())
    queries = drain(replica)
    higher = Ballot(storage.promised.round + 1, 3)
    replica.step(answer(queries[1], queries[1].dst, higher, 0))
    assert replica.rebuilding
    assert f"saw it promise ballot {higher}" in (replica.stale_storage_reason or "")


def test_silent_peers_hold_the_vote_back_half_an_election_timeout_at_most() -> None:
    """Half an election timeout: a peer that is down has lost its memory with its process, and
    waiting longer would only keep the node from voting."""
    replica = restarted_replica(voted_storage().initial_state())
    first = drain(replica)
    ticks = 0
    while not replica.may_vote:
        replica.tick()
        ticks += 1
        again = drain(replica)
        assert all(isinstance(m, RebuildQuery) and m.token == first[0].token for m in again)
    assert ticks == audit_ticks(make_config(1).election_ticks) == 5
    assert not replica.rebuilding


def test_an_answer_to_another_audit_does_not_count() -> None:
    replica = restarted_replica(voted_storage().initial_state())
    query = drain(replica)[0]
    other = RebuildQuery(group_id=1, src=1, dst=query.dst, token=query.token + 1)
    replica.step(answer(other, query.dst, Ballot(99, 3), 99))
    assert not replica.may_vote and not replica.rebuilding


def test_a_peer_reports_the_votes_it_received_from_the_asker() -> None:
    """A leader saw each follower's Promise and Accepted: it reports the highest of each."""
    cluster = Harness()
    leader = cluster.elect(1)
    for payload in ("a", "b", "c"):
        cluster.submit(1, payload)
    cluster.stabilize()
    cluster.replicas[1].step(RebuildQuery(group_id=1, src=3, dst=1, token=5))
    cluster.process(1)
    (info,) = cluster.take(RebuildInfo)
    assert isinstance(info, RebuildInfo)
    top = leader.chosen_upto  # "b" and "c" share an instance: they queued behind "a"
    assert top >= 2 and (info.seen_promised, info.seen_instance) == (leader.ballot, top)
    cluster.replicas[2].step(RebuildQuery(group_id=1, src=3, dst=2, token=5))
    cluster.process(2)
    (info,) = cluster.take(RebuildInfo)
    assert isinstance(info, RebuildInfo)
    assert (info.seen_promised, info.seen_instance) == (Ballot(0, 0), 0)  # a follower saw none


def restore_a_backup(audit: bool, leader: int = 1) -> Harness:
    """Instance 1 holds "x", chosen by the votes of nodes 1 and 3 only (node 2 never heard of
    it), under ``leader`` (1, or 3 itself). Node 3 restarts on a backup taken before its vote;
    node 1 answers what node 3 asks (with ``audit``: the audit) and goes down. Nodes 2 and 3 are
    a majority with no record of "x", and node 3 cannot tell its storage from a node's that has
    merely been away."""
    cluster = Harness()
    cluster.elect(leader)
    backup = copy.deepcopy(cluster.storage[3])
    cluster.drop = lambda msg: msg.src == 2 or msg.dst == 2
    cluster.submit(leader, "x")
    cluster.stabilize()
    cluster.tick_all(2)  # a heartbeat: a leader's own votes reach its peers no other way
    assert cluster.applied_payloads(1) == ["x"]
    assert cluster.storage[2].instances == {} and 1 in cluster.storage[3].instances
    cluster.storage[3] = backup
    cluster.applied[3] = []
    cluster.audit = audit
    cluster.drop = (
        lambda msg: msg.src == 2
        or msg.dst == 2
        or (msg.src == 1 and not isinstance(msg, RebuildInfo))
    )
    cluster.start(3)
    cluster.stabilize()
    cluster.drop = lambda msg: msg.src == 1 or msg.dst == 1
    del cluster.replicas[1]
    cluster.tick_all(60)
    cluster.submit(3, "y")
    cluster.tick_all(60)
    return cluster


@pytest.mark.parametrize("leader", [1, 3], ids=["restored-follower", "restored-leader"])
def test_without_the_audit_a_restored_backup_lets_a_second_value_be_chosen(leader: int) -> None:
    """The negative control of the next test: the danger is real, and this harness shows it."""
    cluster = restore_a_backup(audit=False, leader=leader)
    assert cluster.applied[3][0].value != cluster.applied[1][0].value
    assert [c.payload for c in cluster.applied[3][0].value] != ["x"]


@pytest.mark.parametrize("leader", [1, 3], ids=["restored-follower", "restored-leader"])
def test_a_restored_backup_rebuilds_and_the_chosen_value_survives(leader: int) -> None:
    """Node 1 saw node 3's Accepted (node 1 leads), or its Heartbeat saying how far its own
    votes go (node 3 led: no peer receives a leader's own votes)."""
    cluster = restore_a_backup(audit=True, leader=leader)
    assert cluster.applied[3] == [] and cluster.replicas[3].rebuilding  # waits for node 1
    reason = cluster.replicas[3].stale_storage_reason or ""
    assert "node 1 saw it vote in instance 1" in reason, reason
    cluster.drop = lambda msg: False
    cluster.start(1)
    cluster.tick_all(80)
    assert not cluster.replicas[3].rebuilding
    for node_id in (1, 2, 3):
        assert cluster.applied_payloads(node_id)[:2] == ["x", "y"], node_id


def test_a_group_of_two_does_not_audit() -> None:
    """Every majority of two holds the other node, whose storage is intact: old votes here
    lose nothing, and a rebuild could wait for instances only this node's vote can choose."""
    cluster = Harness(nodes=2)
    cluster.elect(1)
    cluster.submit(1, "a")
    cluster.stabilize()
    state = cluster.storage[2].initial_state()
    assert state.audit
    replica = Replica(make_config(2, 2), state, random.Random(0))
    assert replica.may_vote and drain(replica) == []


def test_an_accepted_for_a_chosen_instance_is_a_durable_write() -> None:
    """An Accepted proves the storage knows the instance (audit.py); a chosen mark alone may be
    a relaxed write that a power loss takes back, so the answer waits for a vote's write."""
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(1, "a")
    cluster.tick_all(2)  # the heartbeat tells the followers it is chosen
    follower = cluster.replicas[2]
    assert follower.log.is_chosen(1)
    chosen = cluster.applied[2][0].value
    ballot = follower.promised
    follower.step(
        Accept(group_id=1, src=1, dst=2, ballot=ballot, instance=1, value=chosen, chosen_upto=1)
    )
    ready = follower.ready()
    assert ready.persist.must_sync and [w.instance for w in ready.persist.accepted] == [1]
    ready.mark_persisted()
    assert [type(m).__name__ for m in ready.messages] == ["Accepted"]


def test_a_rebuild_promises_and_learns_what_peers_saw_it_do() -> None:
    """A candidate's Prepare counts as its promise even where it was ignored, so the peers'
    own promises may be below it: the rebuild's floor and target take what they saw too, or
    the next restart's audit would take the rebuilt storage for a stale one."""
    replica = Replica(make_config(1, 3), InitialState(rebuilding=True), random.Random(0))
    queries = drain(replica)
    for query in queries:
        replica.step(
            RebuildInfo(
                group_id=1,
                src=query.dst,
                dst=1,
                token=query.token,  # type: ignore[attr-defined]
                promised=Ballot(4, 2),
                highest_instance=0,
                chosen_upto=0,
                seen_promised=Ballot(5, 1),
                seen_instance=3,
            )
        )
    assert replica.promised == Ballot(5, 1) and replica.rebuild_target == 3


def test_a_re_proposed_instance_known_chosen_leaves_the_window() -> None:
    """A new leader re-proposes what it learned chosen above a gap; when the votes come, the
    instance is chosen already, and it must leave ``inflight`` all the same: left there, its
    slot and bytes stalled the window (``max_inflight_bytes``) until the leader stepped down."""
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "a")
    cluster.stabilize()
    leadership = leader._leadership
    assert leadership is not None and leadership.inflight == {}
    chosen = cluster.applied[1][0].value
    leader._propose(leadership, 1, chosen)  # as _become_leader does for a known value
    cluster.process(1)
    cluster.stabilize()
    assert leadership.inflight == {} and leadership.inflight_bytes == 0
