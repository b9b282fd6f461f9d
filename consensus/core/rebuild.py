"""Rebuilding: a node whose storage is new votes only once it cannot contradict its lost votes.

Why
---
Paxos is safe because every acceptor remembers its promises and votes. A node whose disk was
replaced, or whose database file was deleted, comes back under the same id remembering neither.
If it voted at once, a value chosen by its lost vote and one other vote (3 nodes) could be missed
by the next leader's phase 1 over {this node, the third node}, which would then choose a second
value for the same instance; and a lost promise could let it accept an older leader's proposal
that it had promised to refuse. Nothing else in the protocol notices.

What a node with new storage does (after "Paxos Made Live" §5.1, where a replica with a corrupted
disk "participates in Paxos as a non-voting member" until it is safe):

1. It answers no Prepare, Accept, Heartbeat or PreVote and never campaigns. It still learns chosen
   values, applies them, and forwards its clients' commands and reads to the leader.
2. It asks every peer (``RebuildQuery``) for its promise and the highest instance it knows of
   (``RebuildInfo``), and asks again every ``retry_ticks`` until *every* peer has answered: a peer
   it has not heard from may be a leader holding a promise the lost storage made, or the only
   other voter of a value the lost storage helped choose. Each rebuild asks with a random token
   that the answers echo: a late copy of an answer to an earlier rebuild (say the new cluster's
   first, when every peer had seen nothing) does not count.
3. It promises the highest ballot reported, which is at least every ballot that existed before
   (so at least every ballot the lost storage may have promised), and waits until it knows that
   every instance up to the highest one reported is chosen: every instance the lost storage voted
   in had been proposed by then, so every value its lost votes helped choose is one it now reports
   as chosen to any new leader. Only then does it vote. If no peer knows that instance chosen
   (a crashed leader's vote above anything proposed since), it asks the leader to fill the gap
   (``FillRequest``): the leader proposes no-ops up to it, which its phase 1 made safe; without
   that, an idle group would leave it rebuilding until clients wrote enough.

A ballot the lost storage used may be used again: if the only nodes that saw it lost their
storage too (a minority of five, say), nobody reports it. That is safe because no value was
accepted in it (a phase 1 needs a majority, which would include a node that reports it) and
because a candidate counts only Promises that echo the random nonce of its own Prepares: a late
Promise to the earlier campaign of the same ballot is ignored.

A new cluster goes through the same steps: every node's storage is new, every answer is "nothing
yet", and each node votes as soon as it has heard from all the others. So a new cluster serves
once every node has started once. It cannot do with a majority: a majority that answers "nothing
yet" may be one node that lost its disk and one that has been away since the group began, while
the only member that remembers the group's history is the one not answering.

A group of two cannot always rebuild: its one other node may hold a vote for an instance that
only this node's vote could now make chosen. (With two nodes there is no fault tolerance to
begin with: a majority is both.)

The target and the new promise are persisted as they are decided (``Persist.rebuild``), so a
crash during rebuilding resumes it; the flag clears in a later write, before any vote. If a
majority of the nodes lose their storage, what only they knew is lost: no protocol can rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ballot import ZERO_BALLOT, Ballot
from .messages import RebuildInfo


@dataclass(frozen=True, slots=True)
class RebuildDecision:
    """What a rebuilding node must reach before it votes: promise ``floor``, know ``target``."""

    floor: Ballot
    target: int


@dataclass(slots=True)
class Rebuild:
    """A rebuilding node's progress; ``target`` is None until the peers have answered."""

    token: int
    """Sent with the queries of this rebuild; answers that do not echo it are ignored."""
    target: int | None = None
    answers: dict[int, RebuildInfo] = field(default_factory=dict)

    def record(self, info: RebuildInfo) -> None:
        if self.target is None and info.token == self.token:
            self.answers[info.src] = info

    def decide(self, peers: tuple[int, ...]) -> RebuildDecision | None:
        """The decision, once every peer has answered (see the module docstring)."""
        if self.target is not None or any(node_id not in self.answers for node_id in peers):
            return None
        answers = [self.answers[node_id] for node_id in peers]
        # What a peer saw this node promise or vote (audit.py) counts too: the lost storage
        # held at least that, and a floor or target below it would make the next restart's
        # audit take this rebuilt storage for a stale one.
        return RebuildDecision(
            max((max(info.promised, info.seen_promised) for info in answers), default=ZERO_BALLOT),
            max((max(info.highest_instance, info.seen_instance) for info in answers), default=0),
        )

    def unanswered(self, peers: tuple[int, ...]) -> list[int]:
        return [node_id for node_id in peers if node_id not in self.answers]
