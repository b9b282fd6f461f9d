"""A peer's values that decode (they are in their fields' ranges) but are far from anything the
node knows: dropped before the replica sees them (``consensus.runtime.plausible``), the link
stays up, and a working peer's far-looking but genuine messages still get through.

What they did before: an Accept for a far instance was voted and written, and the next leader
filled the gap below it with no-ops (instance 2**63-1: 23 GB in 160 s, then the process died,
again at every election); a Prepare far above the promise was promised and written, and every
later campaign needed a higher round. The node is the ``rig`` (conftest.py); the test is node 2.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consensus.core.ballot import Ballot
from consensus.core.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    ChosenEntry,
    Command,
    Heartbeat,
    LearnReply,
    Message,
    Nack,
    Prepare,
    Promise,
)
from consensus.runtime.plausible import MAX_INSTANCES_AHEAD, MAX_ROUND_JUMP
from tests.fixtures.logs import consensus_logs

from .conftest import Rig

B = Ballot(1, 2)
VALUE = (Command("r", '{"op": "put", "key": "k", "value": "v"}'),)


def accept(instance: int, chosen_upto: int = 0, ballot: Ballot = B) -> Accept:
    return Accept(
        group_id=1,
        src=2,
        dst=1,
        ballot=ballot,
        instance=instance,
        value=VALUE,
        chosen_upto=chosen_upto,
    )


FAR = MAX_INSTANCES_AHEAD + 1
"""One instance beyond the bound: the node knows nothing chosen (a vote is not a chosen mark)."""
HIGH = Ballot(1 + MAX_ROUND_JUMP + 1, 2)
"""One round beyond the bound, above the node's promise of round 1."""


def far_messages() -> list[Message]:
    header = {"group_id": 1, "src": 2, "dst": 1}
    return [
        accept(FAR),
        Prepare(**header, ballot=HIGH, first_instance=1, force=True, nonce=5),
        Accept(**header, ballot=HIGH, instance=2, value=VALUE, chosen_upto=0),
        Heartbeat(**header, ballot=B, chosen_upto=0, seq=1, voted=FAR),
        Nack(**header, ballot=B, promised=HIGH),
        Accepted(**header, ballot=B, instance=FAR),
        LearnReply(**header, entries=(ChosenEntry(FAR, VALUE),), chosen_upto=0),
        Promise(
            **header,
            ballot=B,
            first_instance=1,
            chosen_upto=0,
            accepted=(AcceptedEntry(FAR, B, VALUE),),
        ),
    ]


def test_a_restored_nodes_audit_hears_a_peer_far_ahead_of_its_chosen_prefix() -> None:
    """A RebuildInfo is never dropped (plausible.py): it answers a restarted node's audit, which
    votes without the answers it lacks at its deadline. Here node 1 restarted on an old backup
    (promise 5.1; it had promised 9.1 and voted up to instance 80,000) and asks node 2, a
    follower that voted up to there but is still catching up (chosen up to 100). Dropped as too
    far ahead, that one answer, which proves the storage stale, was lost, and node 1 voted again
    on what it had forgotten (a review)."""
    import random

    from consensus.core import InitialState, Replica, ReplicaConfig
    from consensus.core.messages import Command, RebuildQuery
    from consensus.core.storage import StoredInstance
    from consensus.runtime.plausible import implausible

    far = 80_000

    def config(node_id: int) -> ReplicaConfig:
        return ReplicaConfig(node_id=node_id, node_ids=(1, 2, 3), group_id=1)

    restored = Replica(
        config(1),
        InitialState(promised=Ballot(5, 1), chosen_upto=10, audit=True),
        random.Random(1),
    )
    peer = Replica(
        config(2),
        InitialState(
            promised=Ballot(9, 1),
            chosen_upto=100,
            instances=(StoredInstance(far, Ballot(9, 1), (Command("r", "x"),), False),),
        ),
        random.Random(2),
    )
    # what node 2 saw of node 1 before node 1's disk went back: its leader's heartbeat
    peer.step(
        Heartbeat(group_id=1, src=1, dst=2, ballot=Ballot(9, 1), chosen_upto=100, seq=1, voted=far)
    )
    ready = restored.ready()
    ready.mark_persisted()
    queries = [m for m in (*ready.messages, *ready.eager_messages) if isinstance(m, RebuildQuery)]
    restored.advance(ready)
    answers = []
    for query in (q for q in queries if q.dst == 2):
        peer.step(query)
        answer = peer.ready()
        answer.mark_persisted()
        answers += [*answer.messages, *answer.eager_messages]
        peer.advance(answer)
    assert answers
    for info in answers:
        assert implausible(restored, info) is None
        restored.step(info)
    assert restored.rebuilding and not restored.may_vote
    assert "9.1" in (restored.stale_storage_reason or "")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with consensus_logs(caplog):
        yield caplog


async def test_far_values_are_dropped_and_counted_and_the_link_stays(
    rig: Rig, logs: pytest.LogCaptureFixture
) -> None:
    replica = rig.node.replicas[1]
    await rig.send([accept(1)])
    await rig.until(lambda: 1 in replica.log.entries, "first vote")

    far = far_messages()
    await rig.send(far)
    await rig.send([accept(2)])  # after them, on the same link: still up, and in order
    await rig.until(lambda: 2 in replica.log.entries, "vote after them")

    assert replica.log.highest_instance() == 2  # no vote, no chosen mark far away
    assert replica.promised == B  # no promise far above
    assert replica.ballot == B  # nor a leader of that ballot
    transport = rig.node.transport
    assert transport is not None
    assert transport.peer_stats(2).dropped_inbound == len(far)
    assert transport.peer_stats(2).connected_in == 1
    lines = [r.getMessage() for r in logs.records if "such messages are ignored" in r.message]
    kinds = {type(m).__name__ for m in far}
    assert len(lines) == len(kinds)  # once per kind of message
    assert any(f"dropped Accept from node 2 for group 1: instance {FAR}" in line for line in lines)

    await rig.send(far)  # again: counted, not logged again
    await rig.send([accept(3)])
    await rig.until(lambda: 3 in replica.log.entries, "third vote")
    assert transport.peer_stats(2).dropped_inbound == 2 * len(far)
    assert len([r for r in logs.records if "such messages are ignored" in r.message]) == len(lines)


async def test_a_working_peers_far_looking_messages_get_through(rig: Rig) -> None:
    """The bounds' edges, and what a working cluster sends a node that was away for long."""
    replica = rig.node.replicas[1]
    await rig.send([accept(1)])
    await rig.until(lambda: 1 in replica.log.entries, "first vote")

    edge = MAX_INSTANCES_AHEAD
    await rig.send([accept(edge)])  # as far as a leader may run ahead of a stuck instance
    await rig.until(lambda: edge in replica.log.entries, "vote at the edge")

    # A new leader after as many elections as the bound allows: promised.
    top = Ballot(1 + MAX_ROUND_JUMP, 2)
    await rig.send([accept(2, ballot=top)])
    await rig.until(lambda: replica.promised == top, "promise at the edge")

    # A node far behind (away for a billion instances) votes in the leader's current instances:
    # the leader's Accept says how far the log is chosen.
    current = 10**9
    await rig.send([accept(current, chosen_upto=current - 3, ballot=top)])
    await rig.until(lambda: current in replica.log.entries, "vote far ahead of this node")
    transport = rig.node.transport
    assert transport is not None
    assert transport.peer_stats(2).dropped_inbound == 0
