"""The protocol clock: due ticks count in full under load, a stall counts as a heartbeat interval
(``TickClock``), and a turn hands the replicas ticks and messages in the order they came."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from consensus.core import Ballot, Heartbeat
from consensus.registry import registry
from consensus.runtime.clock import TickClock
from consensus.runtime.node import PaxosNode, _Ticks
from tests.fixtures.logs import consensus_logs
from tests.fixtures.loop_node import one_node_config


def clock(start: float = 100.0) -> TickClock:
    # the runtime's defaults: 10 ms ticks, a 1 s election timeout, 200 ms heartbeats
    return TickClock.starting(start, interval=0.01, stall_after=0.5, stall_ticks=20)


def test_on_time_wake_ups_count_one_tick_each() -> None:
    c = clock()
    assert c.delay(100.0) == pytest.approx(0.01)
    assert c.advance(100.005) == (0, 0.0)  # woken early: nothing is due
    counted = [c.advance(100.0 + 0.01 * n + 0.0001)[0] for n in range(1, 101)]
    assert counted == [1] * 100
    assert c.delay(101.0) == pytest.approx(0.01, abs=1e-6)


def test_late_wake_ups_under_load_count_every_tick_that_came_due() -> None:
    c = clock()
    assert c.advance(100.0105) == (1, 0.0)
    assert c.advance(100.3505) == (34, 0.0)  # 340 ms late: load, not a stall
    assert c.advance(100.3605) == (1, 0.0)  # and the schedule is kept, not restarted


def test_a_stall_counts_as_a_heartbeat_interval_and_the_clock_starts_over() -> None:
    c = clock()
    assert c.advance(100.0101) == (1, 0.0)
    ticks, stall = c.advance(103.02)  # the process stood still for 3 s
    assert ticks == 20
    assert stall == pytest.approx(3.0, abs=0.01)
    assert c.delay(103.02) == pytest.approx(0.01)
    assert c.advance(103.0301) == (1, 0.0)


def test_a_stall_alone_cannot_time_out_a_follower() -> None:
    """Whatever a stall lasts, it counts for less than the shortest election timeout (100 ticks
    here) minus the heartbeat interval a follower may already have waited before it."""
    for seconds in (0.6, 2.0, 30.0, 3600.0):
        c = clock()
        ticks, _ = c.advance(100.0 + seconds)
        assert ticks + 20 < 100


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0.0, "stall_after": 0.5, "stall_ticks": 20},
        {"interval": 0.01, "stall_after": 0.005, "stall_ticks": 20},
        {"interval": 0.01, "stall_after": 0.5, "stall_ticks": 0},
    ],
)
def test_nonsense_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need interval > 0"):
        TickClock.starting(0.0, **options)  # type: ignore[arg-type]


class RecordingReplica:
    """Stands in for a group's Replica: records what the node hands it, in order."""

    rebuilding = False  # what the node's tick path also reads (its rebuild log lines)
    rebuilt_upto = None
    stale_storage_reason = None  # ... and its restart audit's (core/audit.py)
    audit_unanswered: list[int] = []
    acceptor = SimpleNamespace(promised=Ballot(1, 2))  # ... and its check of the ballots' rounds

    def __init__(self) -> None:
        self.events: list[str] = []

    def step(self, message: Heartbeat) -> None:
        self.events.append(f"heartbeat {message.seq}")

    def tick(self) -> None:
        self.events.append("tick")


def heartbeat(seq: int) -> Heartbeat:
    return Heartbeat(group_id=1, src=2, dst=1, ballot=Ballot(1, 2), chosen_upto=0, seq=seq)


def test_a_turn_hands_over_messages_and_ticks_in_the_order_they_arrived(tmp_path: Path) -> None:
    """A turn that waited long for the disk finds many ticks and the leader's heartbeats that
    arrived among them: fed all heartbeats first and all ticks after, a follower would take the
    ticks for silence and start an election."""
    node = PaxosNode(one_node_config(tmp_path), {1: registry.create("kv", 1)})
    replica = RecordingReplica()
    node.replicas = {1: replica}  # type: ignore[dict-item]
    node._on_messages(2, [heartbeat(1)])
    node._inbox.append(_Ticks(2))  # what the clock task appends
    node._on_messages(2, [heartbeat(2)])
    node._inbox.append(_Ticks(1))
    node._feed_replicas()
    assert replica.events == ["heartbeat 1", "tick", "tick", "heartbeat 2", "tick"]


def test_messages_for_a_group_this_node_lacks_are_dropped_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer whose config lists a group ours does not sends it heartbeats every few ticks:
    one log line per peer and group (a minute apart), not one per message."""
    node = PaxosNode(one_node_config(tmp_path), {1: registry.create("kv", 1)})
    replica = RecordingReplica()
    node.replicas = {1: replica}  # type: ignore[dict-item]
    stray = [dataclasses.replace(heartbeat(seq), group_id=7) for seq in range(50)]
    node._on_messages(2, [*stray, heartbeat(1)])
    node._on_messages(3, [dataclasses.replace(heartbeat(9), src=3, group_id=7)])
    with consensus_logs(caplog):
        node._feed_replicas()
    lines = [r.getMessage() for r in caplog.records if "does not list" in r.getMessage()]
    assert lines == [
        "node 1: dropping messages from node 2 for group 7, which this node's config does not "
        "list (first: Heartbeat); every node must list the same groups",
        "node 1: dropping messages from node 3 for group 7, which this node's config does not "
        "list (first: Heartbeat); every node must list the same groups",
    ]
    assert replica.events == ["heartbeat 1"]  # the others' messages still arrive
