"""``StateChecks.run``: the leader's periodic state checks, against a stand-in node (what the
checks touch of ``PaxosNode``): a group is checked each interval while it has something new, and
a check that took ``s`` seconds is followed by the next one no sooner than ``STALL_SHARE * s``
later, so that the checks' scans stall the writes for at most 0.1% of the time."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from consensus.runtime.apply import STALL_SHARE, Outcome
from consensus.runtime.state_checks import StateChecks
from kvstore.statemachines import KVStateMachine


class LeaderNode:
    """Leads group 1, whose KV machine has a ``state_digest``; every check's scan "took"
    ``took`` seconds; a write follows each check, so there is always something new."""

    node_id = 1
    transport = None

    def __init__(self, took: float) -> None:
        self.replicas = {1: SimpleNamespace(is_leader=lambda: True)}
        self.machines = {1: KVStateMachine(1)}
        self.applied = {1: 1}
        self.divergence = SimpleNamespace(alarmed=lambda group_id: False, peers=())
        self.applier = SimpleNamespace(digests=SimpleNamespace(window=1), state_seconds={})
        self.took = took
        self.checks = 0

    async def submit(self, group_id: int, payload: str, request_id: str) -> Outcome:
        self.checks += 1
        self.applier.state_seconds[group_id] = self.took
        outcome = Outcome(group_id, request_id, self.applied[group_id], "0 rows")
        self.applied[group_id] += 1  # a write after the check: the next round has news
        return outcome


async def checks_within(seconds: float, took: float, interval: float = 0.02) -> int:
    node: Any = LeaderNode(took)
    task = asyncio.create_task(StateChecks(node, interval).run())
    await asyncio.sleep(seconds)
    task.cancel()
    return node.checks


async def test_a_check_that_took_long_spaces_the_next_ones() -> None:
    assert await checks_within(0.3, took=0.0) >= 3  # every interval: something new each time
    # One check, then none for STALL_SHARE times what it took (here 1,000 s).
    assert await checks_within(0.3, took=1.0) == 1
    assert STALL_SHARE == 1000
