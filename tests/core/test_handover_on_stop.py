"""``Replica.hand_over``: a leader about to stop hands its group to the most up-to-date reachable
peer with ``TimeoutNow`` and proposes nothing more, so that the group gets a new leader at once
instead of after an election timeout (``PaxosNode.stop`` calls it before closing the peer links).
The last test runs the simulator's random faults with graceful stops of leaders added."""

from __future__ import annotations

import pytest

from consensus.core import Accept, Forward, Heartbeat, Promise, Role, TimeoutNow
from consensus.sim import SimSettings
from consensus.sim.cluster import SimCluster

from .harness import Harness


def timeouts_now(cluster: Harness) -> list[TimeoutNow]:
    return [m for m in cluster.in_flight if isinstance(m, TimeoutNow)]


def test_the_leader_hands_over_to_the_most_up_to_date_peer_and_stops_proposing() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "both-know")
    cluster.stabilize()
    cluster.tick_all(3)  # heartbeats: the leader knows how far each follower is
    cluster.drop = lambda msg: msg.dst == 3  # node 3 falls behind
    for n in range(3):
        cluster.submit(1, f"only-2-knows-{n}")
    cluster.stabilize()
    cluster.tick_all(2)
    cluster.drop = lambda msg: False
    assert leader.peer_chosen_upto[2] > leader.peer_chosen_upto.get(3, 0)

    assert leader.hand_over() == 2
    cluster.process(1)
    assert [(m.dst, m.ballot) for m in timeouts_now(cluster)] == [(2, leader.ballot)]
    assert leader.retiring and leader.is_leader()  # until it sees the new ballot

    # From now on it proposes nothing: a command of its own fails at once ("retry elsewhere"),
    # and one forwarded to it (in flight from node 3) is dropped when it arrives.
    held = cluster.take(TimeoutNow)
    cluster.submit(1, "own")
    assert [f.request_id for f in cluster.readies[1][-1].failed] == ["r-own"]
    cluster.submit(3, "forwarded")
    assert any(isinstance(m, Forward) for m in cluster.in_flight)
    cluster.stabilize()
    assert leader.is_leader()
    assert not any(
        isinstance(m, Accept) and m.src == 1 and m.instance > leader.chosen_upto
        for ready in cluster.readies[1][-3:]
        for m in ready.eager_messages
    )
    assert "forwarded" not in cluster.applied_payloads(1)

    # The TimeoutNow arrives: node 2 campaigns at once and wins; node 1 steps down.
    cluster.in_flight.extend(held)
    cluster.stabilize()
    assert cluster.replicas[2].is_leader()
    assert leader.role is Role.FOLLOWER and leader.leader_id == 2
    # Node 3 forwards its command again to the new leader, which chooses it.
    cluster.tick_all(10)
    assert "forwarded" in cluster.applied_payloads(3)
    assert cluster.applied_payloads(1) == cluster.applied_payloads(2)


def test_the_hand_over_takes_no_election_timeout() -> None:
    cluster = Harness()
    cluster.elect(1)
    cluster.submit(1, "before")
    cluster.stabilize()
    cluster.tick_all(3)
    target = cluster.replicas[1].hand_over()
    assert target in (2, 3)
    cluster.stabilize()  # not a single tick
    assert cluster.replicas[target].is_leader()
    assert not cluster.replicas[1].is_leader()


def test_a_peer_not_heard_from_recently_is_not_chosen() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "a")
    cluster.stabilize()
    cluster.tick_all(3)
    cluster.drop = lambda msg: 2 in (msg.src, msg.dst)  # node 2 is cut off...
    cluster.tick_all(12)  # ...for longer than an election timeout (10 ticks)
    assert leader.peer_chosen_upto[2] >= leader.peer_chosen_upto[3]  # it was up to date
    assert leader.hand_over() == 3


def test_a_leader_that_hears_no_peer_hands_over_to_nobody() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.drop = lambda msg: 1 in (msg.src, msg.dst)
    cluster.tick_all(12)  # past 2 heartbeat intervals, within the quorum loss limit (30 ticks)
    assert leader.is_leader()
    before = len(cluster.readies[1])
    assert leader.hand_over() is None
    cluster.process(1)
    # What it sent, dropped or not (the drop filter keeps node 1's messages out of in_flight).
    sent = [m for r in cluster.readies[1][before:] for m in (*r.eager_messages, *r.messages)]
    assert not [m for m in sent if isinstance(m, TimeoutNow)]


def test_a_lost_timeout_now_is_sent_again() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.tick_all(3)
    cluster.drop = lambda msg: isinstance(msg, TimeoutNow)
    target = leader.hand_over()
    cluster.stabilize()
    assert leader.is_leader()
    cluster.drop = lambda msg: False
    retry_ticks = leader.config.retry_ticks
    cluster.tick_all(retry_ticks)
    assert cluster.replicas[target].is_leader()


def test_a_retiring_node_neither_campaigns_nor_takes_a_hand_over() -> None:
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.tick_all(3)
    follower = cluster.replicas[2]
    assert follower.hand_over() is None
    # A TimeoutNow to it (a preferred-node hand-over, say) is ignored...
    follower.step(TimeoutNow(group_id=1, src=1, dst=2, ballot=leader.ballot))
    assert follower.role is Role.FOLLOWER
    # ...and when the leader goes silent, it never campaigns, nor promises anything to node 3
    # (see the next test): that takes a majority without it, which a node that stops must not
    # be part of.
    cluster.drop = lambda msg: 1 in (msg.src, msg.dst)
    cluster.tick_all(60)
    assert follower.role is Role.FOLLOWER
    assert not any(cluster.replicas[n].is_leader() for n in (2, 3))
    assert follower.promised == leader.ballot


def test_a_candidate_that_is_told_to_stop_drops_its_candidacy() -> None:
    cluster = Harness()
    candidate = cluster.replicas[1]
    cluster.drop = lambda msg: isinstance(msg, Promise)  # its campaign stays undecided
    for _ in range(40):
        cluster.tick(1)
        cluster.stabilize()
        if candidate.role is Role.CANDIDATE:
            break
    else:
        pytest.fail("node 1 never campaigned")
    assert candidate.hand_over() is None
    assert candidate.role is Role.FOLLOWER
    cluster.drop = lambda msg: False
    cluster.tick_all(60)
    assert not candidate.is_leader()
    assert any(cluster.replicas[n].is_leader() for n in (2, 3))


@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
def test_graceful_stops_keep_the_simulators_invariants(nodes: int) -> None:
    stops = 0
    for seed in range(60):
        cluster = SimCluster(seed, SimSettings(nodes=nodes, groups=2, graceful_stop_rate=0.03))
        result = cluster.run()
        assert result.violation is None, f"seed {seed}: {result.violation}"
        assert result.chosen > 0
        stops += cluster.graceful_stops
    assert stops > 60  # the fault did happen, often


def test_only_a_peer_the_runtime_reaches_is_chosen() -> None:
    """The runtime passes the peers whose links are up: a peer that stopped a moment ago may
    still look recently heard (and up to date) to the core."""
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "a")
    cluster.stabilize()
    cluster.tick_all(3)
    assert leader.hand_over(reachable=[3]) == 3
    cluster.process(1)
    assert [m.dst for m in timeouts_now(cluster)] == [3]


def test_the_new_leader_does_not_depend_on_the_stopping_node_for_what_it_must_learn() -> None:
    """A stopping node promises nothing to the candidate it handed over to: its promise would
    report how far it knows the log chosen, further than the others may know (followers learn
    of the leader's own commands from its next message), and the new leader, which proposes
    only above that, would have to learn the rest from the node that is gone. Seen for real: a
    new leader stuck for 3 s (its stuck timer) until it stepped down and a second election."""
    cluster = Harness()
    leader = cluster.elect(1)
    cluster.submit(1, "a")
    cluster.stabilize()
    cluster.tick_all(3)
    cluster.submit(1, "b")
    cluster.stabilize()  # chosen: node 1 knows it, nodes 2 and 3 voted but were not told yet
    assert leader.chosen_upto > max(cluster.replicas[n].chosen_upto for n in (2, 3))
    cluster.drop = lambda msg: isinstance(msg, Heartbeat) and msg.src == 1  # nor will they be
    target = leader.hand_over()
    assert target is not None
    cluster.stabilize()
    assert cluster.replicas[target].is_leader()
    cluster.drop = lambda msg: 1 in (msg.src, msg.dst)  # node 1 has stopped
    cluster.submit(target, "c")
    cluster.tick_all(5)  # less than a learn interval, far less than the stuck timer
    assert cluster.applied_payloads(target) == ["a", "b", "c"]
