"""Proposer state: a candidacy (phase 1 in progress) and a leadership (phase 2 while stable).

Phase 1 runs once per leadership, for every instance from the first unchosen one on. After a
majority of Promises the leader re-proposes, in its own ballot, the value of the highest-ballot vote
reported for each instance (a no-op where nobody voted), and from then on sends only Accepts: the
seed's "skip prepare while the leader is stable", made safe by never skipping the first prepare.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field

from .ballot import Ballot
from .messages import NOOP, AcceptedEntry, Command, Promise, Value, value_size


@dataclass(slots=True)
class Candidacy:
    ballot: Ballot
    nonce: int = 0
    """Sent with the Prepares; only Promises that echo it count (messages.Prepare.nonce)."""
    promises: dict[int, Promise] = field(default_factory=dict)


@dataclass(slots=True)
class PreVoteRound:
    """A pre-vote in progress: the nodes (this one included) that would take part in an
    election of round ``round``."""

    round: int
    grants: set[int] = field(default_factory=set)


@dataclass(slots=True)
class PendingRead:
    """A read waiting for a majority to confirm, by acking heartbeat ``seq``, that we still lead."""

    dst: int
    token: int
    index: int
    seq: int


@dataclass(slots=True)
class Leadership:
    ballot: Ballot
    start: int
    """First instance this leadership proposes in. Below it everything is chosen (perhaps not yet
    learned here); at and above it this leader is the only proposer of its ballot."""
    next_instance: int
    max_queue: int
    inflight: dict[int, Value] = field(default_factory=dict)
    inflight_bytes: int = 0
    """``value_size`` of ``inflight``'s values (``may_propose``)."""
    votes: dict[int, set[int]] = field(default_factory=dict)
    queue: deque[Command] = field(default_factory=deque)
    known_ids: set[str] = field(default_factory=set)
    """Request ids queued or in flight, so a retried command is not proposed twice."""
    last_heard: dict[int, int] = field(default_factory=dict)
    heartbeat_seq: int = 0
    recovery_top: int = 0
    """The last instance phase 1 re-proposed: until it is chosen, this leader may not know every
    value chosen before it, so it serves no read index yet."""
    acked_seq: dict[int, int] = field(default_factory=dict)
    reads: list[PendingRead] = field(default_factory=list)
    read_heartbeat_due: bool = False
    transfer_tick: int = 0
    """Earliest tick for the next hand-over attempt to the preferred leader."""
    announced_upto: int = 0
    """The chosen prefix last sent to every follower (with a proposal's Accepts or a Heartbeat)."""
    forwarded_by: dict[str, int] = field(default_factory=dict)
    """The follower that forwarded each queued command, by request id (``_propose`` takes it)."""
    awaiting: dict[int, set[int]] = field(default_factory=dict)
    """Instance -> the followers that forwarded commands it holds: they are told at once when it
    is chosen (``Replica._announce_chosen``)."""
    progress_tick: int = 0
    queued_bytes: int = 0
    """``value_size`` of ``queue``: whether a full batch is waiting (``may_propose``)."""
    fill_upto: int = 0
    """Propose (no-ops if nothing is queued) up to this instance: a rebuilding node needs them
    chosen (messages.FillRequest)."""

    def enqueue(
        self, command: Command, recently_chosen: Container[str] = (), origin: int | None = None
    ) -> bool:
        """Queue a command unless it is queued, in flight or chosen already, or the queue is
        full. ``origin``: the follower that forwarded it."""
        request_id = command.request_id
        if (
            request_id in self.known_ids
            or request_id in recently_chosen
            or len(self.queue) >= self.max_queue
        ):
            return False
        self.queue.append(command)
        self.queued_bytes += value_size((command,))
        self.known_ids.add(command.request_id)
        if origin is not None:
            self.forwarded_by[request_id] = origin
        return True

    def may_propose(
        self, window: int, max_commands: int, max_bytes: int, max_inflight_bytes: int
    ) -> bool:
        """Whether to propose a batch of the queue now: when no instance is in flight, or when a
        full batch is waiting and the window has room for it, in instances and in bytes
        (``ReplicaConfig.max_inflight_bytes`` says why bytes).

        A partial batch waits for the instances in flight to be chosen, and grows meanwhile.
        Every instance costs each node a fixed amount of work (messages, a row, a turn of the
        writer), so under load fewer, fuller instances carry more commands on the same CPU;
        with 4 groups led by different nodes, proposing every partial batch at once made
        instances of about 8 commands where 32 clients per group were waiting. A single client
        never waits for this: its command finds nothing in flight."""
        if len(self.inflight) >= window:
            return False
        if self.next_instance <= self.fill_upto:
            return True  # no-ops: no bytes
        if not self.queue or (self.inflight and self.inflight_bytes >= max_inflight_bytes):
            return False
        return (
            not self.inflight or len(self.queue) >= max_commands or self.queued_bytes >= max_bytes
        )

    def take_batch(self, max_commands: int, max_bytes: int) -> Value:
        """Pack queued commands into one value, up to the count and byte limits (at least one)."""
        batch: list[Command] = []
        size = 0
        while self.queue and len(batch) < max_commands:
            command_size = value_size((self.queue[0],))
            if batch and size + command_size > max_bytes:
                break
            size += command_size
            batch.append(self.queue.popleft())
        self.queued_bytes -= size
        return tuple(batch)

    def forget(self, instance: int) -> Value | None:
        self.votes.pop(instance, None)
        value = self.inflight.pop(instance, None)
        if value is not None:
            self.inflight_bytes -= value_size(value)
            for command in value:
                self.known_ids.discard(command.request_id)
        return value


def recovery_values(promises: list[Promise], start: int) -> dict[int, Value]:
    """What a new leader must propose at and above ``start``: for each instance, the value of the
    highest-ballot vote any promise reported (a value reported as chosen beats every ballot), and a
    no-op for gaps below the highest reported instance."""
    best: dict[int, AcceptedEntry] = {}
    for promise in promises:
        for entry in promise.accepted:
            if entry.instance < start:
                continue
            current = best.get(entry.instance)
            if current is None or _outranks(entry, current):
                best[entry.instance] = entry
    top = max(best, default=start - 1)
    return {
        instance: best[instance].value if instance in best else NOOP
        for instance in range(start, top + 1)
    }


def _outranks(entry: AcceptedEntry, current: AcceptedEntry) -> bool:
    if entry.chosen != current.chosen:
        return entry.chosen
    return entry.ballot > current.ballot
