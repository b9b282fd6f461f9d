"""The messages replicas exchange, and the values they agree on.

Every message names its group and its sender and receiver; the transport only routes them. The
classes are closed: dispatch is on ``type(message)`` and nothing else should subclass them.

Vocabulary (DESIGN.md): an *instance* is a slot in a group's log; a *value* is what an instance
holds: a batch of client commands, or the empty batch (the no-op a new leader uses to fill gaps).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ballot import ZERO_BALLOT, Ballot


@dataclass(frozen=True, slots=True)
class Command:
    """A client command. ``request_id`` makes retries idempotent: it is applied at most once."""

    request_id: str
    payload: str


Value = tuple[Command, ...]
NOOP: Value = ()


def value_size(value: Value) -> int:
    """Roughly the bytes a value takes on the wire (for batching and reply limits)."""
    return sum(len(command.request_id) + len(command.payload) + 8 for command in value)


@dataclass(frozen=True, slots=True)
class AcceptedEntry:
    """An acceptor's vote for one instance, as reported in a Promise."""

    instance: int
    ballot: Ballot
    value: Value
    chosen: bool = False


@dataclass(frozen=True, slots=True)
class ChosenEntry:
    instance: int
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    group_id: int
    src: int
    dst: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare(Message):
    """Phase 1a, once per leadership, for every instance >= ``first_instance``."""

    ballot: Ballot
    first_instance: int
    force: bool = False
    """Sent on a leader's hand-over (TimeoutNow): acceptors answer it even while they still
    hear from a live leader, which otherwise makes them ignore Prepares (see Replica)."""
    nonce: int = 0
    """Random per candidacy, echoed by the Promise: a candidate counts only answers to its own
    Prepares. A node that lost its storage may campaign again with a ballot it used before it
    lost it (nobody it can still ask may have seen that ballot), and a late Promise to the old
    campaign must not count for the new one (core/rebuild.py)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise(Message):
    """Phase 1b. ``accepted`` lists every vote above ``max(first_instance, chosen_upto + 1) - 1``;
    instances up to ``chosen_upto`` are chosen and the new leader learns them instead of
    re-proposing them, which keeps a Promise small however far behind the candidate is."""

    ballot: Ballot
    first_instance: int
    chosen_upto: int
    accepted: tuple[AcceptedEntry, ...]
    nonce: int = 0
    """The Prepare's nonce."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack(Message):
    """A rejection: ``ballot`` was below the acceptor's ``promised``."""

    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept(Message):
    """Phase 2a. Carries the leader's chosen prefix so followers learn without extra messages."""

    ballot: Ballot
    instance: int
    value: Value
    chosen_upto: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(Message):
    """Phase 2b: a vote. Leaves the node only after the vote is durable."""

    ballot: Ballot
    instance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    """Leader liveness plus the chosen prefix; ``seq`` lets the leader count fresh acks."""

    ballot: Ballot
    chosen_upto: int
    seq: int
    voted: int = 0
    """The highest instance of the leader's own votes that are durable (those it counted):
    no follower receives them, so this is how peers learn them for the restart audit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAck(Message):
    ballot: Ballot
    seq: int
    chosen_upto: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnRequest(Message):
    """Ask a peer for the chosen values of instances ``first_instance..last_instance``."""

    first_instance: int
    last_instance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnReply(Message):
    entries: tuple[ChosenEntry, ...]
    chosen_upto: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward(Message):
    """Commands a follower's clients submitted, sent on to the leader."""

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexRequest(Message):
    """A follower asks the leader for a read index (see ``Replica.read_index``)."""

    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexReply(Message):
    """The leader's answer, after a majority confirmed it still leads: reads may be served once
    the asker has applied up to ``index``."""

    token: int
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(Message):
    """The leader of ``ballot`` hands leadership to the receiver (the group's preferred leader):
    campaign now instead of waiting for an election timeout (Raft's leadership transfer)."""

    ballot: Ballot


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVote(Message):
    """Would you take part in an election of mine? Asked before campaigning (Raft's PreVote):
    it changes no state anywhere, and a node that still hears a working leader says no."""

    round: int
    """The round this pre-vote is for (replies carry it back, so stale ones are ignored)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVoteReply(Message):
    round: int
    granted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildQuery(Message):
    """Sent by a node whose storage for the group is new: what has the group seen? (rebuild.py)
    Also sent by a node that restarts on storage it had: what did you see me vote? (audit.py)"""

    token: int
    """Random per rebuild; the answer echoes it, so a late answer to an earlier rebuild (a new
    cluster's first one, say) does not count for this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildInfo(Message):
    """The answer to a RebuildQuery. Every node answers, rebuilding or not."""

    token: int
    promised: Ballot
    """The sender's promise: at least every ballot it ever used or promised."""
    highest_instance: int
    """The highest instance the sender knows of: voted for, proposed, or known chosen."""
    chosen_upto: int
    seen_promised: Ballot = ZERO_BALLOT
    """The highest ballot of a Promise or Accepted the sender received from the asker (audit.py)."""
    seen_instance: int = 0
    """The highest instance of an Accepted the sender received from the asker (audit.py)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FillRequest(Message):
    """A rebuilding node needs every instance up to ``instance`` chosen, and no peer knows them
    chosen (a vote for an instance above anything the leader proposes, left by a crashed
    leader): the leader proposes no-ops up to it, which its phase 1 made safe (rebuild.py)."""

    instance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultDigest(Message):
    """A digest of the results this node's state machine gave for a window of the group's log.

    Not for the replicas: the runtime compares it with its own digest of the same window
    (``consensus.runtime.divergence``). The same commands in the same order must give the same
    results on every node; a difference means the nodes' state machines differ (other code, or
    an ``apply`` that is not deterministic) and so may their state."""

    first: int
    last: int
    """The window's first and last instances."""
    window: int
    """Instances per window (``PAXOS_DIGEST_WINDOW``): only windows of the same size compare."""
    digest: int


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Prepare,
    Promise,
    Nack,
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    LearnRequest,
    LearnReply,
    Forward,
    ReadIndexRequest,
    ReadIndexReply,
    TimeoutNow,
    PreVote,
    PreVoteReply,
    RebuildQuery,
    RebuildInfo,
    FillRequest,
    ResultDigest,
)
"""Every concrete message class, in a fixed order (the codec's type tags follow it)."""
