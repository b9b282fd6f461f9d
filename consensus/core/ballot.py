"""Ballots: the totally ordered proposal numbers of Paxos.

A ballot is ``(round, node_id)``. Comparing rounds first and node ids second gives a total order in
which two nodes can never pick the same ballot, so "one proposal per (ballot, instance)" holds as
long as a node never reuses a ballot. The replica guarantees that by persisting its own promise of a
ballot before the Prepare for it leaves the node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Ballot:
    round: int
    node_id: int

    def next_for(self, node_id: int) -> Ballot:
        """The smallest ballot owned by ``node_id`` that is higher than this one."""
        return Ballot(self.round + 1, node_id)

    def __str__(self) -> str:
        return f"{self.round}.{self.node_id}"


ZERO_BALLOT = Ballot(0, 0)
"""Lower than any ballot a node can propose with (rounds start at 1)."""
