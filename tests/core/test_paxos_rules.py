"""One test per protocol rule, in the style of etcd raft's ``raft_paper_test.go``. Each docstring
quotes the rule (DESIGN.md §3, "Paxos Made Simple") the test pins down."""

from __future__ import annotations

import random

import pytest

from consensus.core import (
    NOOP,
    Accept,
    Accepted,
    Ballot,
    Command,
    Forward,
    Heartbeat,
    LearnRequest,
    LocalProtocolError,
    MemoryStorage,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    RemoteProtocolError,
    Replica,
    Role,
)
from consensus.core.storage import InitialState, StoredInstance

from .harness import Harness, drain, make_config


def lone_replica(node_id: int = 1, nodes: int = 3, state: InitialState | None = None) -> Replica:
    return Replica(make_config(node_id, nodes), state or InitialState(), random.Random(0))


def ticks_until_it_asks_for_a_pre_vote(replica: Replica) -> int:
    """Ticks until the replica's election timer expires, which it shows by sending PreVotes."""
    ticks = 0
    while not any(isinstance(m, PreVote) for m in drain(replica)):
        replica.tick()
        ticks += 1
    return ticks


def grant_pre_vote(replica: Replica, src: int, round_: int = 1) -> None:
    replica.step(PreVoteReply(group_id=1, src=src, dst=replica.node_id, round=round_, granted=True))


# -------------------------------------------------------------------- acceptor rules


def test_acceptor_never_accepts_below_its_promise() -> None:
    """An acceptor can accept a proposal numbered n iff it has not promised a higher number."""
    replica = lone_replica(1)
    replica.step(Prepare(group_id=1, src=2, dst=1, ballot=Ballot(5, 2), first_instance=1))
    drain(replica)
    replica.step(
        Accept(group_id=1, src=3, dst=1, ballot=Ballot(4, 3), instance=1, value=NOOP, chosen_upto=0)
    )
    sent = drain(replica)
    assert [type(m) for m in sent] == [Nack]
    assert sent[0].promised == Ballot(5, 2)
    assert 1 not in replica.log.entries


def test_acceptor_rejects_prepare_below_promise() -> None:
    replica = lone_replica(1)
    replica.step(Prepare(group_id=1, src=2, dst=1, ballot=Ballot(5, 2), first_instance=1))
    drain(replica)
    replica.step(Prepare(group_id=1, src=3, dst=1, ballot=Ballot(3, 3), first_instance=1))
    (nack,) = drain(replica)
    assert isinstance(nack, Nack) and nack.ballot == Ballot(3, 3)


def test_promise_reports_every_vote_from_the_first_instance_on() -> None:
    """Phase 1b answers with the accepted proposals, so the new leader can respect them."""
    stored = (
        StoredInstance(3, Ballot(2, 2), (Command("a", "x"),), False),
        StoredInstance(5, Ballot(1, 3), (Command("b", "y"),), False),
    )
    replica = lone_replica(1, state=InitialState(Ballot(2, 2), 2, stored))
    replica.step(Prepare(group_id=1, src=3, dst=1, ballot=Ballot(3, 3), first_instance=1))
    (promise,) = drain(replica)
    assert isinstance(promise, Promise)
    assert promise.chosen_upto == 2
    assert [(e.instance, e.ballot) for e in promise.accepted] == [
        (3, Ballot(2, 2)),
        (5, Ballot(1, 3)),
    ]


def test_vote_is_persisted_in_the_same_ready_that_carries_it() -> None:
    """Acceptor state is durable before a promise or accept leaves the node."""
    replica = lone_replica(1)
    replica.step(Prepare(group_id=1, src=2, dst=1, ballot=Ballot(1, 2), first_instance=1))
    ready = replica.ready()
    assert ready.persist.promised == Ballot(1, 2)
    replica_accept = Accept(
        group_id=1, src=2, dst=1, ballot=Ballot(1, 2), instance=1, value=NOOP, chosen_upto=0
    )
    ready.mark_persisted()
    replica.advance(ready)
    replica.step(replica_accept)
    ready = replica.ready()
    assert [(w.instance, w.ballot) for w in ready.persist.accepted] == [(1, Ballot(1, 2))]
    assert ready.persist.must_sync


# -------------------------------------------------------------------- the Ready contract


def test_messages_cannot_be_read_before_the_ready_is_persisted() -> None:
    replica = lone_replica(1)
    replica.step(Prepare(group_id=1, src=2, dst=1, ballot=Ballot(1, 2), first_instance=1))
    ready = replica.ready()
    with pytest.raises(LocalProtocolError):
        _ = ready.messages
    ready.mark_persisted()
    assert isinstance(ready.messages[0], Promise)


def test_second_ready_before_advance_is_refused() -> None:
    replica = lone_replica(1)
    replica.step(Prepare(group_id=1, src=2, dst=1, ballot=Ballot(1, 2), first_instance=1))
    ready = replica.ready()
    with pytest.raises(LocalProtocolError):
        replica.ready()
    with pytest.raises(LocalProtocolError):
        replica.advance(ready)  # not marked persisted


@pytest.mark.parametrize(
    "bad",
    [
        {"retry_ticks": 0},
        {"learn_ticks": 0},
        {"quorum_loss_ticks": -1},
        {"window": 0},
        {"max_inflight_bytes": 0},
    ],
)
def test_tick_counts_a_replica_divides_by_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        make_config(1, nodes=3, **bad)


def test_own_vote_counts_only_after_advance() -> None:
    """The leader's own Promise/Accepted is held back until its state is durable."""
    replica = lone_replica(1, nodes=1)
    for _ in range(25):
        replica.tick()
    ready = replica.ready()
    assert replica.role is Role.CANDIDATE
    assert ready.persist.promised == replica.ballot
    ready.mark_persisted()
    replica.advance(ready)  # the held-back self-promise is counted here
    assert replica.is_leader()
    replica.submit(Command("r1", "hello"))
    ready = replica.ready()
    assert ready.committed == ()  # own Accepted not counted yet
    ready.mark_persisted()
    replica.advance(ready)
    ready = replica.ready()
    assert [c.payload for entry in ready.committed for c in entry.value] == ["hello"]


def test_votes_wait_for_the_write_but_proposals_may_overlap_it() -> None:
    """Accepted and Promise are votes: only after persist. A leader's Accept casts no vote, so it
    may leave while the leader's own vote is being written (Raft thesis §10.2.1)."""
    cluster = Harness()
    leader = cluster.elect(1)
    leader.submit(Command("r", "x"))
    ready = leader.ready()
    assert {type(m) for m in ready.eager_messages} == {Accept}
    assert ready.persist.accepted  # the leader's own vote, still to be written
    ready.mark_persisted()
    assert not any(isinstance(m, Accepted) for m in ready.messages)
    leader.advance(ready)
    follower = cluster.replicas[2]
    follower.step(ready.eager_messages[0])
    vote = follower.ready()
    assert vote.eager_messages == ()
    assert vote.persist.accepted
    vote.mark_persisted()
    assert [type(m) for m in vote.messages] == [Accepted]


def test_candidate_persists_its_ballot_before_the_prepare_leaves() -> None:
    """A node never reuses a ballot: its own promise is in the Ready that carries the Prepare."""
    replica = lone_replica(1)
    for _ in range(25):
        replica.tick()
    assert replica.role is Role.FOLLOWER  # it asked first: no ballot, no promise of its own yet
    assert replica.promised == Ballot(0, 0)
    drain(replica)
    grant_pre_vote(replica, 2)
    ready = replica.ready()
    ready.mark_persisted()
    prepares = [m for m in ready.messages if isinstance(m, Prepare)]
    assert prepares and all(m.ballot == ready.persist.promised for m in prepares)


# -------------------------------------------------------------------- leader election


def test_election_timeout_is_randomized_between_one_and_two_timeouts() -> None:
    for seed in range(20):
        replica = Replica(make_config(1), InitialState(), random.Random(seed))
        assert 10 <= ticks_until_it_asks_for_a_pre_vote(replica) < 20


def test_majority_of_promises_makes_a_leader() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    assert leader.leader_id == 1
    assert all(r.leader_id == 1 for r in cluster.replicas.values())


def test_new_leader_reproposes_the_highest_ballot_value() -> None:
    """If any acceptor in the majority accepted a value, the new leader proposes the value of the
    highest-numbered proposal among them."""
    low, high = (Command("old", "old"),), (Command("new", "new"),)
    cluster = Harness()
    cluster.storage[1] = _storage_with_vote(1, Ballot(1, 2), low)
    cluster.storage[2] = _storage_with_vote(1, Ballot(2, 3), high)
    cluster.start(1)
    cluster.start(2)
    cluster.drop = lambda msg: 3 in (msg.src, msg.dst)  # the majority is nodes 1 and 2
    cluster.elect(1)
    cluster.stabilize()
    assert [e.value for e in cluster.applied[1]] == [high]


def test_new_leader_fills_gaps_with_noops() -> None:
    cluster = Harness()
    value = (Command("x", "x"),)
    cluster.storage[2] = _storage_with_vote(3, Ballot(1, 2), value)
    cluster.start(2)
    cluster.elect(1)
    cluster.stabilize()
    assert [e.value for e in cluster.applied[1]] == [NOOP, NOOP, value]


def test_leader_skips_prepare_while_stable() -> None:
    """Phase 1 runs once per leadership; later commands need only phase 2."""
    cluster = Harness()
    cluster.elect(1)
    sent_before = len(cluster.readies[1])
    for n in range(5):
        cluster.submit(2, f"v{n}")
        cluster.stabilize()
    later = [
        m
        for ready in cluster.readies[1][sent_before:]
        for m in ready.eager_messages + ready.messages
    ]
    assert not any(isinstance(m, Prepare) for m in later)
    assert any(isinstance(m, Accept) for m in later)
    cluster.tick_all(2)  # the next heartbeat tells followers the last instance is chosen
    assert cluster.applied_payloads(3) == [f"v{n}" for n in range(5)]


def test_nack_makes_the_leader_step_down() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    leader.step(Nack(group_id=1, src=2, dst=1, ballot=leader.ballot, promised=Ballot(99, 3)))
    assert leader.role is Role.FOLLOWER
    assert leader.step_down_reason == f"saw the higher ballot {Ballot(99, 3)}"


def test_a_higher_ballot_heartbeat_makes_the_leader_step_down() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    leader.step(Heartbeat(group_id=1, src=3, dst=1, ballot=Ballot(50, 3), chosen_upto=0, seq=1))
    assert leader.role is Role.FOLLOWER
    assert leader.leader_id == 3


def test_leader_without_a_majority_steps_down() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.drop = lambda msg: True
    cluster.tick(1, 3 * 10 + 2)
    assert leader.role is not Role.LEADER
    assert leader.step_down_reason == "heard from no majority for 30 ticks"


def test_a_leader_that_idled_keeps_leading_when_work_arrives() -> None:
    """The stuck timer counts from the moment work waits, not from the last value chosen: an
    idle spell longer than quorum_loss_limit, then a tick while the first new Accepts are still
    on the wire, must not depose a leader whose followers all answer (it did, in benchmarks)."""
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "before")
    cluster.stabilize()
    cluster.tick_all(leader.config.quorum_loss_limit + 5)  # idle; heartbeats keep flowing
    assert leader.is_leader()

    cluster.submit(1, "after")  # its Accepts are in flight...
    cluster.tick(1)  # ...when the leader's clock ticks
    assert leader.is_leader(), leader.step_down_reason
    cluster.stabilize()
    cluster.tick_all(2)
    assert cluster.applied_payloads(3) == ["before", "after"]


def test_a_leader_whose_proposals_stay_unanswered_steps_down_and_says_why() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "lost")
    cluster.drop = lambda msg: isinstance(msg, Accept)  # heartbeats go on, accepts never arrive
    cluster.tick_all(leader.config.quorum_loss_limit + 2)
    assert not leader.is_leader()
    assert leader.step_down_reason is not None
    assert "nothing chosen" in leader.step_down_reason


def test_a_leader_that_cannot_learn_a_gap_below_its_start_steps_down_even_under_load() -> None:
    """Instance 1 is chosen (votes of 3 and 1) but only node 3 knows it; node 2 is elected with
    the promises of 2 and 3, so it starts above instance 1, and node 3 is then gone for good.
    Nobody left can teach node 2 the gap: only a new phase 1 (with node 1's vote) recovers it.
    Commands chosen above the gap must not count as progress that keeps node 2 leading."""
    cluster = Harness()
    first = cluster.elect(3)
    cluster.drop = lambda msg: 2 in (msg.src, msg.dst)
    cluster.submit(3, "x")
    cluster.stabilize()
    assert (first.chosen_upto, cluster.replicas[1].chosen_upto) == (1, 0)
    cluster.drop = lambda msg: msg.src == 3  # node 3 goes quiet and loses its majority
    for _ in range(first.config.quorum_loss_limit + 2):
        first.tick()
        cluster.process(3)
    assert not first.is_leader()
    cluster.in_flight.clear()
    cluster.drop = lambda msg: 1 in (msg.src, msg.dst)  # the promises come from 2 and 3
    second = cluster.elect(2)
    assert second._leadership is not None and second._leadership.start == 2
    cluster.in_flight.clear()
    cluster.drop = lambda msg: 3 in (msg.src, msg.dst)
    for index in range(40):  # a new command every 10 ticks
        cluster.submit(2, f"c{index}")
        cluster.tick_all(10)
    cluster.stabilize()
    assert cluster.applied_payloads(1)[:2] == ["x", "c0"]
    assert cluster.applied_payloads(2) == cluster.applied_payloads(1)


def test_competing_candidates_never_choose_two_values() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(1, "a")
    cluster.take(Accept)  # the leader's accepts for "a" are lost
    cluster.drop = lambda msg: msg.src == 1 and not isinstance(msg, Promise)  # node 1 goes quiet
    for _ in range(12):
        cluster.replicas[3].tick()  # ...long enough for node 3 to stop trusting it
    cluster.elect(2)  # node 2 takes over; node 1's own vote for "a" is reported to it
    cluster.drop = lambda msg: False
    cluster.submit(2, "b")
    cluster.stabilize()
    cluster.tick_all(20)
    logs = {n: [e.value for e in cluster.applied[n]] for n in (1, 2, 3)}
    assert logs[1] == logs[2] == logs[3]
    payloads = [c.payload for value in logs[1] for c in value]
    assert sorted(payloads) == ["a", "b"]


# -------------------------------------------------------------------- batching and window


def test_commands_queued_together_go_into_one_instance() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    for n in range(10):
        leader.submit(Command(f"r{n}", f"v{n}"))
    cluster.process(1)
    accepts = [m for m in cluster.in_flight if isinstance(m, Accept) and m.dst == 2]
    assert len(accepts) == 1 and len(accepts[0].value) == 10
    cluster.stabilize()
    cluster.tick_all(2)
    assert cluster.applied_payloads(2) == [f"v{n}" for n in range(10)]


def proposed_values(cluster: Harness, node_id: int) -> dict[int, tuple[str, ...]]:
    """Payloads of every instance ``node_id`` sent Accepts for, by instance."""
    return {
        m.instance: tuple(c.payload for c in m.value)
        for r in cluster.readies[node_id]
        for m in r.eager_messages + r.messages
        if isinstance(m, Accept)
    }


def test_a_partial_batch_waits_for_the_instance_in_flight_and_then_goes_whole() -> None:
    """Under load, fewer and fuller instances: what arrives while an instance is in flight is
    proposed together once it is chosen, not one instance per arrival."""
    cluster = Harness()
    leader = cluster.elect(1)
    first = leader.log.chosen_upto + 1
    cluster.submit(1, "v0")
    for n in range(1, 6):
        cluster.submit(1, f"v{n}")
    assert proposed_values(cluster, 1) == {first: ("v0",)}
    cluster.stabilize()
    assert proposed_values(cluster, 1) == {
        first: ("v0",),
        first + 1: ("v1", "v2", "v3", "v4", "v5"),
    }
    cluster.tick_all(2)
    assert cluster.applied_payloads(2) == [f"v{n}" for n in range(6)]


def test_a_full_batch_does_not_wait_for_the_instance_in_flight() -> None:
    """Pipelining stays for load that fills batches (by count or by bytes)."""
    cluster = Harness(overrides={"max_batch_commands": 3, "max_batch_bytes": 10_000})
    leader = cluster.elect(1)
    first = leader.log.chosen_upto + 1
    cluster.submit(1, "a")
    for payload in ("b", "c", "d"):
        cluster.submit(1, payload)
    assert proposed_values(cluster, 1) == {first: ("a",), first + 1: ("b", "c", "d")}
    cluster.submit(1, "x" * 10_000)
    assert proposed_values(cluster, 1)[first + 2] == ("x" * 10_000,)


def test_one_ready_proposes_at_most_max_proposals_per_ready_instances() -> None:
    """A flood of queued commands goes out over several Readies (writer turns), not as one
    whole window: a node sends no heartbeat while a turn is written, and turns of a whole
    window of full instances took seconds and caused elections among healthy nodes."""
    cluster = Harness(
        overrides={"window": 8, "max_batch_commands": 2, "max_proposals_per_ready": 3}
    )
    leader = cluster.elect(1)
    cluster.drop = lambda msg: isinstance(msg, Accepted)  # nothing is chosen meanwhile
    before = len(cluster.readies[1])
    for n in range(16):  # queued in one go: 8 full batches
        leader.submit(Command(f"r{n}", f"v{n}"))
    cluster.process(1)
    proposed = [
        {m.instance for m in r.eager_messages + r.messages if isinstance(m, Accept)}
        for r in cluster.readies[1][before:]
    ]
    assert [len(instances) for instances in proposed if instances] == [3, 3, 2]
    cluster.drop = lambda msg: False
    cluster.tick_all(10)
    assert cluster.applied_payloads(1) == [f"v{n}" for n in range(16)]


def test_leader_keeps_at_most_window_instances_in_flight() -> None:
    cluster = Harness(overrides={"window": 2, "max_batch_commands": 1})
    leader = cluster.elect(1)
    cluster.drop = lambda msg: isinstance(msg, Accepted)
    for n in range(6):
        leader.submit(Command(f"r{n}", f"v{n}"))
        cluster.process(1)
    cluster.stabilize()
    instances = {
        m.instance
        for r in cluster.readies[1]
        for m in r.eager_messages + r.messages
        if isinstance(m, Accept)
    }
    assert len(instances) == 2
    cluster.drop = lambda msg: False
    cluster.tick_all(10)
    assert cluster.applied_payloads(1) == [f"v{n}" for n in range(6)]


@pytest.mark.parametrize(("limit", "in_flight"), [(2500, 3), (10**9, 6)])
def test_leader_keeps_at_most_max_inflight_bytes_in_flight(limit: int, in_flight: int) -> None:
    """Past the first instance: a new leader's phase 1 gets every unchosen vote of a follower in
    one Promise, which must fit in one frame (ReplicaConfig.max_inflight_bytes). The second
    case, without a byte limit that matters, is the negative control."""
    cluster = Harness(overrides={"max_inflight_bytes": limit, "max_batch_commands": 1})
    leader = cluster.elect(1)
    cluster.drop = lambda msg: isinstance(msg, Accepted)
    big = "x" * 990  # 1,000 bytes with its request id (value_size)
    for n in range(6):
        leader.submit(Command(f"r{n}", big))
        cluster.process(1)
    cluster.stabilize()
    assert len(leader._leadership.inflight) == in_flight  # type: ignore[union-attr]
    cluster.drop = lambda msg: False
    cluster.tick_all(10)
    assert cluster.applied_payloads(1) == [big] * 6
    assert leader._leadership.inflight_bytes == 0  # type: ignore[union-attr]


# -------------------------------------------------------------------- forwarding, retries


def test_follower_forwards_commands_to_the_leader() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(3, "via-3")
    forwards = [m for m in cluster.in_flight if isinstance(m, Forward)]
    assert [(m.src, m.dst) for m in forwards] == [(3, 1)]
    cluster.stabilize()
    cluster.tick_all(2)
    assert cluster.applied_payloads(3) == ["via-3"]
    resolved = [rid for ready in cluster.readies[3] for rid in ready.resolved]
    assert resolved == ["r-via-3"]


def test_lost_forward_is_retried_until_chosen() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(3, "lost-once")
    assert cluster.take(Forward)
    cluster.tick_all(10)
    assert cluster.applied_payloads(1) == ["lost-once"]


def test_retried_request_id_is_not_proposed_twice_while_in_flight() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    command = Command("same", "x")
    leader.submit(command)
    cluster.process(1)
    leader.step(Forward(group_id=1, src=2, dst=1, commands=(command,)))
    cluster.stabilize()
    assert cluster.applied_payloads(1) == ["x"]


# -------------------------------------------------------------------- learning


def test_heartbeat_carries_the_chosen_prefix_to_followers() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(1, "a")
    cluster.stabilize()
    # Followers voted in the leader's ballot; the next heartbeat tells them it is chosen.
    assert cluster.applied_payloads(1) == ["a"]
    cluster.tick(1, 2)
    cluster.stabilize()
    assert cluster.applied_payloads(2) == ["a"] == cluster.applied_payloads(3)


def heartbeats_sent(cluster: Harness, node_id: int, since: int) -> list[Heartbeat]:
    """Heartbeats in ``node_id``'s Readies from the ``since``-th on."""
    return [
        m
        for r in cluster.readies[node_id][since:]
        for m in r.eager_messages + r.messages
        if isinstance(m, Heartbeat)
    ]


def test_a_follower_whose_forwarded_command_is_chosen_is_told_at_once_and_only_it() -> None:
    """It answers its client without waiting for the next heartbeat; the other follower has no
    client waiting and learns with the next heartbeat or Accept."""
    cluster = Harness()
    cluster.elect(1)
    since = len(cluster.readies[1])
    cluster.submit(3, "via-3")
    cluster.stabilize()
    assert [(m.dst, m.chosen_upto) for m in heartbeats_sent(cluster, 1, since)] == [
        (3, cluster.replicas[1].chosen_upto)
    ]
    assert cluster.applied_payloads(3) == ["via-3"]
    assert [rid for ready in cluster.readies[3] for rid in ready.resolved] == ["r-via-3"]
    assert cluster.applied_payloads(2) == []
    cluster.tick_all(2)
    assert cluster.applied_payloads(2) == ["via-3"]


def test_a_follower_is_told_of_each_chosen_instance_it_waits_for_not_only_its_last() -> None:
    """Two of its commands in two instances in flight at once: the first one's answer does not
    wait for the second instance."""
    cluster = Harness(overrides={"max_batch_commands": 1})
    leader = cluster.elect(1)
    first = leader.log.chosen_upto + 1
    cluster.drop = lambda msg: isinstance(msg, Accepted) and msg.instance == first + 1
    cluster.replicas[2].submit(Command("r-a", "a"))
    cluster.replicas[2].submit(Command("r-b", "b"))
    cluster.stabilize()
    assert proposed_values(cluster, 1) == {first: ("a",), first + 1: ("b",)}
    assert cluster.applied_payloads(2) == ["a"]
    assert [rid for ready in cluster.readies[2] for rid in ready.resolved] == ["r-a"]


def test_followers_are_not_told_of_the_leaders_own_commands_before_the_next_heartbeat() -> None:
    """A message, a reply and a write per instance on every follower, for nobody waiting."""
    cluster = Harness()
    cluster.elect(1)
    since = len(cluster.readies[1])
    cluster.submit(1, "a")
    cluster.stabilize()
    assert cluster.applied_payloads(1) == ["a"]
    assert heartbeats_sent(cluster, 1, since) == []
    assert cluster.applied_payloads(2) == [] == cluster.applied_payloads(3)
    cluster.submit(1, "b")  # the next proposal's Accepts carry the news
    cluster.stabilize()
    assert cluster.applied_payloads(2) == ["a"] == cluster.applied_payloads(3)


def test_lagging_node_learns_missed_instances() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.drop = lambda msg: msg.dst == 3
    for n in range(20):
        cluster.submit(1, f"v{n}")
        cluster.stabilize()
    assert cluster.applied_payloads(3) == []
    cluster.drop = lambda msg: False
    cluster.tick_all(20)
    assert cluster.applied_payloads(3) == [f"v{n}" for n in range(20)]
    assert any(isinstance(m, LearnRequest) for r in cluster.readies[3] for m in r.eager_messages)


def test_old_values_are_served_from_storage_through_log_reads() -> None:
    cluster = Harness(overrides={"cache_size": 2})
    cluster.elect(1)
    for n in range(8):
        cluster.submit(1, f"v{n}")
        cluster.stabilize()
    replica = cluster.replicas[1]
    replica.step(LearnRequest(group_id=1, src=2, dst=1, first_instance=1, last_instance=3))
    ready = replica.ready()
    assert [(r.dst, r.first_instance, r.last_instance) for r in ready.log_reads] == [(2, 1, 3)]
    ready.mark_persisted()
    replica.advance(ready)


def test_restarted_node_keeps_its_promise_and_votes() -> None:
    cluster = Harness()
    cluster.elect(2)
    cluster.submit(2, "durable")
    cluster.stabilize()
    promised = cluster.replicas[3].promised
    restarted = cluster.start(3)
    assert restarted.promised == promised
    cluster.tick_all(20)
    assert cluster.applied_payloads(3)[-1:] == ["durable"] or restarted.chosen_upto >= 1


# -------------------------------------------------------------------- input validation


def test_message_for_another_group_is_rejected() -> None:
    replica = lone_replica(1)
    with pytest.raises(RemoteProtocolError):
        replica.step(Prepare(group_id=2, src=2, dst=1, ballot=Ballot(1, 2), first_instance=1))


def test_message_from_an_unknown_node_is_rejected() -> None:
    replica = lone_replica(1)
    with pytest.raises(RemoteProtocolError):
        replica.step(Prepare(group_id=1, src=9, dst=1, ballot=Ballot(1, 9), first_instance=1))


def test_groups_are_independent() -> None:
    """A node holds one replica per group; each has its own ballots and log."""
    first = Harness()
    second = Harness()
    first.elect(1)
    second.elect(3)
    first.submit(1, "g1")
    first.stabilize()
    assert second.applied_payloads(3) == []
    assert first.replicas[2].leader_id == 1 and second.replicas[2].leader_id == 3


def _storage_with_vote(instance: int, ballot: Ballot, value: tuple[Command, ...]) -> MemoryStorage:
    storage = MemoryStorage(promised=ballot)
    storage.instances[instance] = StoredInstance(instance, ballot, value, False)
    return storage


# -------------------------------------------------------------------- linearizable reads


def reads_of(cluster: Harness, node_id: int) -> list[tuple[int, int]]:
    return [(r.read_id, r.index) for ready in cluster.readies[node_id] for r in ready.reads]


def test_read_index_needs_a_majority_to_confirm_the_leader() -> None:
    """ReadIndex: the leader's chosen prefix is served only after a majority acks a heartbeat
    sent after the read arrived."""
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "w")
    cluster.stabilize()
    cluster.drop = lambda msg: msg.dst == 1 and msg.src != 1  # the leader hears nothing back
    leader.read_index(7)
    cluster.stabilize()
    assert reads_of(cluster, 1) == []
    cluster.drop = lambda msg: False
    cluster.tick_all(3)
    assert reads_of(cluster, 1) == [(7, leader.chosen_upto)]


def test_follower_gets_its_read_index_from_the_leader() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(1, "w")
    cluster.stabilize()
    cluster.replicas[3].read_index(42)
    cluster.stabilize()
    assert reads_of(cluster, 3) == [(42, cluster.replicas[1].chosen_upto)]


def test_new_leader_serves_reads_only_after_its_recovered_values_are_chosen() -> None:
    """A new leader's chosen prefix may lack values a previous leader got chosen: the ones it
    re-proposes from the promises (up to ``recovery_top``). A read it serves before those are
    chosen again could miss a write a client saw acknowledged, so it waits for them, even while
    a majority acks its heartbeats."""
    cluster = Harness()
    value = (Command("x", "x"),)
    cluster.storage[2] = _storage_with_vote(1, Ballot(1, 2), value)
    cluster.start(2)
    cluster.drop = lambda msg: isinstance(msg, Accept)  # the recovered value cannot be chosen
    leader = cluster.elect(1)
    assert leader.is_leader() and leader.chosen_upto == 0
    leader.read_index(1)
    cluster.stabilize()
    cluster.tick_all(6)  # heartbeats go out and a majority acks them: only the gate holds
    assert leader.is_leader() and leader.chosen_upto == 0
    assert reads_of(cluster, 1) == []
    cluster.drop = lambda msg: False
    cluster.tick_all(6)  # the Accepts are retried: instance 1 is chosen, then the read served
    assert leader.chosen_upto >= 1
    ((_read_id, index),) = reads_of(cluster, 1)
    assert index >= 1  # the re-proposed instance is covered by the read
    assert cluster.applied_payloads(1) == ["x"]


def test_isolated_leader_never_answers_reads() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.drop = lambda msg: 1 in (msg.src, msg.dst)
    leader.read_index(5)
    cluster.tick_all(50)
    assert reads_of(cluster, 1) == []


# -------------------------------------------------------------------- preferred leaders


def test_the_preferred_leader_campaigns_first() -> None:
    for seed in range(10):
        timeouts = {}
        for node_id in (1, 2, 3):
            config = make_config(node_id, preferred_leader=2)
            replica = Replica(config, InitialState(), random.Random(seed))
            timeouts[node_id] = ticks_until_it_asks_for_a_pre_vote(replica)
        assert timeouts[2] < min(timeouts[1], timeouts[3])
        assert all(10 <= t < 20 for t in timeouts.values())


def test_a_leader_hands_over_to_the_preferred_node_once_it_is_caught_up() -> None:
    cluster = Harness(overrides={"preferred_leader": 3})
    cluster.elect(1)
    cluster.submit(1, "before")
    cluster.stabilize()
    cluster.tick_all(25)
    assert cluster.replicas[3].is_leader()
    assert not cluster.replicas[1].is_leader()
    cluster.submit(2, "after")
    cluster.stabilize()
    cluster.tick_all(3)
    assert cluster.applied_payloads(1) == ["before", "after"]


def test_a_leader_that_hears_nobody_is_replaced_and_cannot_depose_the_new_one() -> None:
    """Leader stickiness: a node cut off one way (it sends, hears nobody) keeps campaigning;
    its Prepares must neither stop the others' election timers nor depose their new leader."""
    cluster = Harness()
    cluster.elect(1)
    cluster.drop = lambda msg: msg.dst == 1 and msg.src != 1
    cluster.tick_all(80)
    leaders = [n for n in (2, 3) if cluster.replicas[n].is_leader()]
    assert len(leaders) == 1
    cluster.submit(2, "still-works")
    cluster.stabilize()
    cluster.tick_all(40)
    assert [n for n in (2, 3) if cluster.replicas[n].is_leader()] == leaders
    assert "still-works" in cluster.applied_payloads(3)


def test_a_node_cut_off_asks_first_and_cannot_depose_the_leader_when_it_is_back() -> None:
    """PreVote: a node whose election timer expires asks its peers before campaigning and
    campaigns only if a majority hears no working leader either. Cut off, it keeps asking but
    bumps no ballot; back, it has no higher promise for its Nacks of the leader's messages to
    carry (without PreVote those Nacks deposed the leader)."""
    cluster = Harness()
    leader = cluster.elect(1)
    ballot = leader.ballot
    cluster.drop = lambda msg: 3 in (msg.src, msg.dst)
    cluster.tick_all(100)  # node 3's timer expires again and again
    assert cluster.replicas[3].role is Role.FOLLOWER
    assert cluster.replicas[3].promised == ballot
    cluster.drop = lambda msg: False
    cluster.submit(3, "back")
    cluster.stabilize()
    cluster.tick_all(5)
    assert leader.is_leader() and leader.ballot == ballot
    assert "back" in cluster.applied_payloads(3)


def test_followers_of_a_dead_leader_elect_one_of_them_within_one_timeout() -> None:
    """A node asking for a pre-vote knows no leader any more, so it grants the others' pre-votes.
    Had it kept counting the dead leader as live (its own pre-vote restarts its timer), the
    followers could refuse each other round after round (up to 48 ticks over these seeds)."""
    slowest = 0
    for seed in range(60):
        cluster = Harness(seed=seed)
        cluster.elect(1)
        cluster.drop = lambda msg: 1 in (msg.src, msg.dst)
        ticks = 0
        while not any(cluster.replicas[n].is_leader() for n in (2, 3)):
            cluster.tick_all(1)
            ticks += 1
            assert ticks < 200
        slowest = max(slowest, ticks)
    assert slowest < 20  # the longest election timeout


def test_pre_votes_are_granted_only_by_nodes_that_hear_no_working_leader() -> None:
    cluster = Harness()
    cluster.elect(1)
    follower = cluster.replicas[2]
    promised = follower.promised
    follower.step(PreVote(group_id=1, src=3, dst=2, round=9))
    assert [m.granted for m in drain(follower) if isinstance(m, PreVoteReply)] == [False]
    leaderless = lone_replica(2)
    leaderless.step(PreVote(group_id=1, src=3, dst=2, round=9))
    assert [m.granted for m in drain(leaderless) if isinstance(m, PreVoteReply)] == [True]
    assert (follower.promised, leaderless.promised) == (promised, Ballot(0, 0))  # no state


def test_grants_arriving_after_the_leader_was_heard_again_start_no_election() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    follower = cluster.replicas[2]
    for _ in range(25):
        follower.tick()  # nothing delivered: its leader seems gone
    asked = [m for m in drain(follower) if isinstance(m, PreVote)]
    assert asked
    follower.step(Heartbeat(group_id=1, src=1, dst=2, ballot=leader.ballot, chosen_upto=0, seq=99))
    grant_pre_vote(follower, 3, asked[0].round)
    assert follower.role is Role.FOLLOWER
    assert not any(isinstance(m, Prepare) for m in drain(follower))


def test_a_follower_ignores_prepares_while_its_leader_is_alive() -> None:
    cluster = Harness()
    cluster.elect(1)
    follower = cluster.replicas[2]
    follower.step(Prepare(group_id=1, src=3, dst=2, ballot=Ballot(99, 3), first_instance=1))
    assert not follower.has_ready()
    assert follower.promised < Ballot(99, 3)
    follower.step(
        Prepare(group_id=1, src=3, dst=2, ballot=Ballot(99, 3), first_instance=1, force=True)
    )
    assert follower.promised == Ballot(99, 3)


def test_the_chosen_value_cache_is_bounded_by_bytes_too() -> None:
    """Big batches: the cache keeps at most ``cache_bytes`` of payload (never less than the
    newest value), and what fell out is served from storage like any old value."""
    cluster = Harness(overrides={"cache_size": 1000, "cache_bytes": 250})
    cluster.elect(1)
    for n in range(8):
        cluster.submit(1, f"{n}" * 100)
        cluster.stabilize()
    log = cluster.replicas[1].log
    assert 1 <= len(log.recent) <= 2
    assert max(log.recent) == log.chosen_upto
    replica = cluster.replicas[1]
    replica.step(LearnRequest(group_id=1, src=2, dst=1, first_instance=1, last_instance=3))
    ready = replica.ready()
    assert [(r.dst, r.first_instance) for r in ready.log_reads] == [(2, 1)]
    ready.mark_persisted()
    replica.advance(ready)
