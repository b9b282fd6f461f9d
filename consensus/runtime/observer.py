"""Hooks the runtime calls on significant events, for metrics and dashboards.

The runtime knows nothing about Prometheus or channels; whoever wants to watch installs an
observer (``PaxosNode(observer=...)``). Every method must be cheap and must not raise or block:
they run on the event loop, inside the Ready loop.
"""

from __future__ import annotations


class NodeObserver:
    """Default: ignore everything. Override what you need."""

    def role_changed(self, group_id: int, old: str, new: str, ballot: str) -> None:
        """A replica became follower/candidate/leader (elections, step-downs)."""

    def leader_changed(self, group_id: int, leader: int | None) -> None:
        """The leader this node believes in changed."""

    def storage_committed(self, seconds: float, readies: int, instances_applied: int) -> None:
        """One group-commit transaction finished."""

    def commands_applied(self, group_id: int, commands: int, applied: int) -> None:
        """Commands applied to a group's state machine; ``applied`` is the new applied index."""

    def request_finished(self, group_id: int, seconds: float, outcome: str) -> None:
        """A client command finished: ``ok``, ``duplicate``, ``timeout``, ``overloaded`` or
        ``error``."""

    def forwarded(self, group_id: int, commands: int) -> None:
        """Commands this node forwarded to the leader."""

    def loop_stalled(self, seconds: float) -> None:
        """The event loop woke ``seconds`` late: the process stood still (paused, starved of CPU
        or blocked). The protocol clock counted it as one heartbeat interval (clock.py)."""
