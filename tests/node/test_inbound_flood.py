"""A peer that sends faster than the node works: what piles up, and where it stops.

The node here is the ``rig`` (conftest.py): a real ``PaxosNode`` with a real ``PeerConsumer`` in
front of it, and the test plays its peer, node 2. The one thing faked is a slow disk: a gate in
the storage, which holds the writer thread as a slow fsync or a PostgreSQL failover would.

Two piles were unbounded (a review): the runtime's inbox, which takes every decoded frame while a
turn waits for its write (``LinkOptions.inbound_bytes`` now bounds each peer's share, see
``consensus.transport.hub``), and the catch-up reads, each a background task waiting for the
writer thread (``LOG_READS_PER_PEER``). The consumer's own queue does not grow: it handles every
frame without waiting, so daphne reads the socket only as fast as frames are decoded (a flood of
5.5 million heartbeat acks over a real socket left a node's RSS at 104-105 MB).
"""

from __future__ import annotations

import asyncio

from consensus.core.ballot import Ballot
from consensus.core.messages import (
    Accept,
    ChosenEntry,
    Command,
    HeartbeatAck,
    LearnReply,
    LearnRequest,
    Message,
)
from consensus.runtime.node import INBOUND_FRAMES, LOG_READS_PER_PEER
from consensus.transport.codec import encode_frame

from .conftest import FRAME, Rig


def acks(count: int) -> list[Message]:
    """Cheap, valid messages: heartbeat acks, which a follower ignores."""
    return [
        HeartbeatAck(group_id=1, src=2, dst=1, ballot=Ballot(1, 2), seq=i, chosen_upto=0)
        for i in range(count)
    ]


def accept(instance: int) -> Accept:
    value = (Command(f"r{instance}", '{"op": "put", "key": "k", "value": "v"}'),)
    return Accept(
        group_id=1,
        src=2,
        dst=1,
        ballot=Ballot(1, 2),
        instance=instance,
        value=value,
        chosen_upto=0,
    )


async def test_a_flooding_peer_fills_the_inbox_only_to_its_bound_while_a_turn_waits_for_the_disk(
    rig: Rig,
) -> None:
    opened, waiting = rig.gate("persist")
    await rig.send([accept(1)])  # a vote: the turn that writes it waits at the gate
    await rig.until(waiting.is_set, "turn at the disk")
    transport = rig.node.transport
    assert transport is not None
    frame = encode_frame(acks(500))
    bound = INBOUND_FRAMES * FRAME
    fits = -(-bound // len(frame))  # frames admitted before the bound: the last one crosses it

    sizes = []
    for flood in (2, 4):  # twice the bound, then four times: the inbox must not follow
        expected = rig.received() + flood * fits
        for _ in range(flood * fits):
            await rig.peer.send_to(bytes_data=frame)
        await rig.until(lambda n=expected: rig.received() >= n, "arrival of the frames")
        sizes.append(sum(isinstance(m, HeartbeatAck) for m in rig.node._inbox))

    assert sizes == [fits * 500, fits * 500], sizes  # without the bound: 16 and 48 times that
    stats = transport.peer_stats(2)
    assert stats.dropped_inbound == 5 * fits * 500
    assert "wait for this node's next turn" in str(stats.last_error)

    opened.set()  # the disk comes back: the node takes its inbox and goes on with the link
    await rig.until(lambda: not rig.node._inbox, "turn that takes the inbox")
    await rig.send([accept(2)])
    replica = rig.node.replicas[1]
    await rig.until(lambda: 2 in replica.log.entries, "vote after the stall")
    assert replica.log.entries[1].ballot == replica.log.entries[2].ballot == Ballot(1, 2)
    assert transport.peer_stats(2).dropped_inbound == 5 * fits * 500  # nothing more dropped


async def test_catch_up_reads_in_progress_for_a_peer_are_bounded(rig: Rig) -> None:
    replica = rig.node.replicas[1]
    value = (Command("r1", '{"op": "put", "key": "k", "value": "v"}'),)
    await rig.send([LearnReply(group_id=1, src=2, dst=1, entries=(ChosenEntry(1, value),),
                               chosen_upto=1)])  # fmt: skip
    await rig.until(lambda: rig.node.applied.get(1) == 1, "instance 1 learned")
    replica.log.recent.clear()  # as after 4,096 newer instances: served from the database
    opened, waiting = rig.gate("chosen_values")
    tasks_before = len(rig.node._background)

    asks = [LearnRequest(group_id=1, src=2, dst=1, first_instance=1, last_instance=1)] * 200
    await rig.send(asks)
    await rig.until(waiting.is_set, "read at the database")
    await asyncio.sleep(0.2)  # every request of the frame went through a turn
    transport = rig.node.transport
    assert transport is not None
    in_progress = len(rig.node._background) - tasks_before
    assert in_progress == LOG_READS_PER_PEER  # without the bound: 200, each waiting for the writer
    assert transport.peer_stats(2).dropped_inbound == 200 - LOG_READS_PER_PEER

    opened.set()
    link = transport._links[2]

    def replies() -> int:
        return sum(isinstance(m, LearnReply) for m in link._queue)

    await rig.until(lambda: replies() == LOG_READS_PER_PEER, "replies to the reads")
    await rig.until(lambda: not rig.node._log_reads, "end of the reads")
    await rig.send(asks[:1])  # and it serves the next request again
    await rig.until(lambda: replies() == LOG_READS_PER_PEER + 1, "reply to the next request")
