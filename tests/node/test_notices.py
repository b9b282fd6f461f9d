"""The runtime's log lines about a node's groups (``consensus/runtime/notices.py``)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from consensus.core import Role
from consensus.core.ballot import Ballot
from consensus.runtime.notices import NodeNotices
from consensus.runtime.observer import NodeObserver
from tests.fixtures.logs import consensus_logs


def replica(role: Role, leader: int | None, ballot: Ballot, reason: str | None = None) -> Any:
    return SimpleNamespace(role=role, leader_id=leader, ballot=ballot, step_down_reason=reason)


def test_a_step_down_names_the_ballot_it_led_with(caplog: pytest.LogCaptureFixture) -> None:
    """It named the higher ballot it stepped down for twice: "leader -> follower (ballot
    2.1): saw the higher ballot 2.1"."""
    notices = NodeNotices(1, NodeObserver())
    with consensus_logs(caplog), caplog.at_level(logging.INFO, logger="consensus.runtime"):
        notices.role_changes({1: replica(Role.CANDIDATE, None, Ballot(1, 1))})
        notices.role_changes({1: replica(Role.LEADER, 1, Ballot(1, 1))})
        higher = Ballot(2, 3)
        notices.role_changes(
            {1: replica(Role.FOLLOWER, None, higher, f"saw the higher ballot {higher}")}
        )
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "node 1 group 1: follower -> candidate (ballot 1.1)",
        "node 1 group 1: candidate -> leader (ballot 1.1)",
        "node 1 group 1: leader is 1",
        "node 1 group 1: leader -> follower (ballot 1.1): saw the higher ballot 2.3",
    ]
