"""Peer messages too far from anything this node knows to come from a working peer: dropped
before the replica sees them.

Why
---
The codec refuses integers out of their fields' ranges (``transport.untrusted``), but a value in
range can still do lasting harm when it is far from the truth, and only the node knows what is far:

* an instance far above the chosen prefix: the vote is written, every Promise reports it, and the
  next leader fills the gap below it with no-ops, one Accept to every node per instance. An Accept
  for instance 2**63-1 to a follower made the next leader grow to 23 GB in 160 s and die, every
  time it was elected (a review measured it); a gap of 2**20 instances costs a leader about 27 s
  and 0.8 GB. The same comes from a LearnReply (a chosen mark), a Promise, and through the restart
  audit (``core/audit.py``) from an Accepted or a Heartbeat's ``voted`` (a RebuildInfo, which
  sets a rebuilding node's target, is let through all the same: see ``CHECKS``);
* a ballot round far above the node's promise: every campaign after it needs a higher round, and
  at the top of the range there is none, so the group never elects again (a Prepare of round
  2**63-1 did that before the codec's limit; within the limit, a round close below it would).

Dropping a message is always safe in Paxos: it is a lost message. It costs liveness only when the
message was genuine, so the bounds are far beyond what working peers send in the usual case (a
peer or a new leader far behind in learning what is chosen can send such a message: it is lost,
and it learns and sends again; a review ran the simulator with the filter at a bound of 2-8
instances, 1,300 seeds, thousands of drops, no liveness failure):

* ``MAX_INSTANCES_AHEAD`` (65,536) instances above the higher of what this node knows chosen
  (its own prefix or one a peer reported) and the prefix the message itself carries. A leader
  proposes at most ``window`` (32) instances beyond a stuck one, then only as fast as instances
  get chosen, and steps down after ``quorum_loss_limit`` ticks without progress (3 s by default:
  some thousands of instances); a follower far behind gets Accepts whose ``chosen_upto`` is near
  their instance. A gap of that size costs the next leader about 1 s and 50 MB.
* ``MAX_ROUND_JUMP`` (2**40) rounds above this node's promise: rounds grow by one per election,
  and a trillion elections take 1,400 years at one every 40 ms. A node whose database is new
  (promise 0) thus still follows any real cluster.

Not bounded here: a ``chosen_upto`` (a peer far ahead is what a node catching up must believe),
heartbeat sequence numbers, read indexes. A peer that lies about those is Byzantine; Paxos does
not defend against that.

Cost: one dict look-up per message (about 30 ns), and for the checked types a few attribute reads
and comparisons: about 140 ns for an Accept, against 4.5-6 µs for stepping it
(``known_chosen_upto``, which looks at every peer, only when the cheap bound fails).
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.core import Replica
from consensus.core.messages import (
    Accept,
    Accepted,
    Heartbeat,
    LearnReply,
    Message,
    Nack,
    Prepare,
    Promise,
)

__all__ = ["MAX_INSTANCES_AHEAD", "MAX_ROUND_JUMP", "CHECKS", "implausible"]

MAX_INSTANCES_AHEAD = 2**16
"""Instances a peer's message may name above what this node knows chosen (see the module)."""
MAX_ROUND_JUMP = 2**40
"""Rounds a peer's ballot may be above this node's promise (see the module)."""


def _far_round(replica: Replica, round_: int, what: str) -> str | None:
    promised = replica.acceptor.promised.round
    if round_ - promised <= MAX_ROUND_JUMP:
        return None
    return f"{what} of round {round_}, 2**40 rounds or more above this node's promise ({promised})"


def _far_instance(replica: Replica, instance: int, carried: int, what: str) -> str | None:
    """``carried``: the chosen prefix the message itself reports (0: none)."""
    if instance - carried <= MAX_INSTANCES_AHEAD:
        return None
    known = max(replica.known_chosen_upto, carried)
    if instance - known <= MAX_INSTANCES_AHEAD:
        return None
    return (
        f"{what} {instance}, more than {MAX_INSTANCES_AHEAD} instances above what this node "
        f"knows chosen ({known})"
    )


def _prepare(replica: Replica, msg: Prepare) -> str | None:
    return _far_round(replica, msg.ballot.round, "a ballot")


# Accept, Accepted and Heartbeat are most of the traffic: each answers at once in the usual case,
# in one call (about 140 ns; ``replica.step`` of an Accept takes 4.5-6 µs).


def _accept(
    replica: Replica, msg: Accept, jump: int = MAX_ROUND_JUMP, ahead: int = MAX_INSTANCES_AHEAD
) -> str | None:
    if (
        msg.ballot.round - replica.acceptor.promised.round <= jump
        and msg.instance - msg.chosen_upto <= ahead
    ):
        return None
    return _far_round(replica, msg.ballot.round, "a ballot") or _far_instance(
        replica, msg.instance, msg.chosen_upto, "instance"
    )


def _accepted(
    replica: Replica, msg: Accepted, jump: int = MAX_ROUND_JUMP, ahead: int = MAX_INSTANCES_AHEAD
) -> str | None:
    if (
        msg.ballot.round - replica.acceptor.promised.round <= jump
        and msg.instance - replica.log.chosen_upto <= ahead
    ):
        return None
    return _far_round(replica, msg.ballot.round, "a ballot") or _far_instance(
        replica, msg.instance, 0, "instance"
    )


def _heartbeat(
    replica: Replica, msg: Heartbeat, jump: int = MAX_ROUND_JUMP, ahead: int = MAX_INSTANCES_AHEAD
) -> str | None:
    if (
        msg.ballot.round - replica.acceptor.promised.round <= jump
        and msg.voted - msg.chosen_upto <= ahead
    ):
        return None
    return _far_round(replica, msg.ballot.round, "a ballot") or _far_instance(
        replica, msg.voted, msg.chosen_upto, "votes up to instance"
    )


def _nack(replica: Replica, msg: Nack) -> str | None:
    return _far_round(replica, msg.promised.round, "a promise")


def _promise(replica: Replica, msg: Promise) -> str | None:
    problem = _far_round(replica, msg.ballot.round, "a ballot")
    if problem is None and msg.accepted:
        top = max(entry.instance for entry in msg.accepted)
        problem = _far_instance(replica, top, msg.chosen_upto, "a vote in instance")
    return problem


def _learn_reply(replica: Replica, msg: LearnReply) -> str | None:
    if not msg.entries:
        return None
    top = max(entry.instance for entry in msg.entries)
    return _far_instance(replica, top, msg.chosen_upto, "a chosen value in instance")


CHECKS: dict[type[Message], Callable[[Replica, Message], str | None]] = {
    Prepare: _prepare,  # type: ignore[dict-item]
    Accept: _accept,  # type: ignore[dict-item]
    Accepted: _accepted,  # type: ignore[dict-item]
    Heartbeat: _heartbeat,  # type: ignore[dict-item]
    Nack: _nack,  # type: ignore[dict-item]
    Promise: _promise,  # type: ignore[dict-item]
    LearnReply: _learn_reply,  # type: ignore[dict-item]
}
"""Message type -> its check; the types not listed carry nothing the replica keeps (a
HeartbeatAck's or a TimeoutNow's ballot must equal one this node knows) or only values that
are bounded where they are used (a LearnRequest's range, a FillRequest's instance).

Not a RebuildInfo: it answers a restarted node's audit (``core/audit.py``) and a rebuild, and a
lost answer there is not harmless. An audit waits for its answers only until a deadline, then
votes without them; a node restored from an old backup, asking a peer that voted far above its
own chosen prefix (catching up), had that peer's one answer that proved its storage stale
dropped, and voted on the forgotten promises and votes the audit exists to protect (a review).
A far-off RebuildInfo can only hold up the rebuild of the node that asked, which does not vote
meanwhile."""


def implausible(replica: Replica, msg: Message) -> str | None:
    """Why ``msg`` is too far from what ``replica`` knows to be stepped, or None."""
    check = CHECKS.get(type(msg))
    return None if check is None else check(replica, msg)
