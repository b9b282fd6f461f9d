"""The restart audit: a node whose storage went back in time (a restored backup) finds out.

Why
---
A node restarted on an old copy of its own storage (a backup restored after a disk failure, a
virtual machine rolled back to a snapshot, a filesystem that lost its last writes) has forgotten
its newer promises and votes, just as a node with new storage has (rebuild.py), but it cannot
tell: its storage looks like a node's that has merely been away. If it voted at once, a value
chosen by one of its forgotten votes and one other vote (3 nodes) could be missed by the next
leader's phase 1 over {this node, the third node}.

Its peers can tell, because a vote leaves a node only once it is durable: a ``Promise`` or
``Accepted`` from node N for ballot b and instance i proves that N's storage holds a promise of
at least b and knows instance i (voted for, or known chosen; an ``Accepted`` for an instance
already chosen is written like any vote, since the chosen mark alone may be a relaxed write).
A leader's own votes reach no peer, so its ``Prepare`` (sent once its promise to itself is
durable) proves its ballot, and its ``Heartbeat`` carries the highest instance of its own
counted, hence durable, votes. Every replica remembers the highest ballot and instance each
peer's messages proved (``SeenVotes``, in memory). A replica that starts on storage it had
before (``InitialState.audit``) asks its peers (``RebuildQuery``, whose ``RebuildInfo`` answer
carries what the answerer saw from the asker) before it votes, and compares with what its
storage held at start. If a peer saw more, the storage is older than the node's own history,
and the node rebuilds before it votes (rebuild.py), which is safe whatever old votes the
storage still holds. No false alarm is possible: a peer can only have seen what the storage
made durable.

Best effort, and why that is still worth having
------------------------------------------------
Only a peer that kept running since the forgotten votes remembers them, and only the peers that
received them (the leaders and candidates of that time, the followers of a leader's
heartbeats). A node restored while the others run, the usual case, is caught; a whole cluster
restored from backups is not, nor a leader's votes of its last heartbeat interval. The audit
waits at most ``audit_ticks`` (half an election timeout) for the answers: a peer that is down
answers nothing, and its memory died with it. So a restart costs one round trip before the node
votes, and at most half an election timeout when a peer is down (the runtime logs whom it did
not hear from). The verdict is written down (``RebuildWrite.started``): a node restarted again
before its rebuild is done goes on rebuilding, whatever its peers remember by then.

Groups of two nodes do not audit: every majority holds the other node, whose storage is intact,
so old votes here lose nothing; and a rebuild could wait, for good, for instances that only this
node's vote can get chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ballot import ZERO_BALLOT, Ballot
from .messages import RebuildInfo


def audit_ticks(election_ticks: int) -> int:
    """How long a restarted replica waits for its peers' answers before it votes without the
    missing ones: half an election timeout, and at least 3 ticks (a round trip)."""
    return max(3, election_ticks // 2)


@dataclass(slots=True)
class SeenVotes:
    """What a peer's votes proved about its storage: the highest ballot of a ``Promise`` or
    ``Accepted`` it sent, and the highest instance of an ``Accepted``."""

    promised: Ballot = ZERO_BALLOT
    instance: int = 0

    def saw(self, ballot: Ballot, instance: int = 0) -> None:
        self.promised = max(self.promised, ballot)
        self.instance = max(self.instance, instance)


@dataclass(slots=True)
class Audit:
    """A restarted replica's audit of its storage: what the storage held at start, and the
    peers that have answered."""

    token: int
    """Sent with the queries; answers that do not echo it are ignored."""
    promised: Ballot
    highest_instance: int
    deadline: int
    """The tick at which the replica votes without the answers still missing."""
    answered: set[int] = field(default_factory=set)

    def record(self, info: RebuildInfo) -> str | None:
        """Count ``info``; the reason the storage is stale if it proves so, else None."""
        if info.token != self.token:
            return None
        self.answered.add(info.src)
        if info.seen_promised > self.promised:
            return (
                f"node {info.src} saw it promise ballot {info.seen_promised}, its database "
                f"holds {self.promised}"
            )
        if info.seen_instance > self.highest_instance:
            return (
                f"node {info.src} saw it vote in instance {info.seen_instance}, its database "
                f"knows instances up to {self.highest_instance}"
            )
        return None

    def unanswered(self, peers: tuple[int, ...]) -> list[int]:
        return [node_id for node_id in peers if node_id not in self.answered]
