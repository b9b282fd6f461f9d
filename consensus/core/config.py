"""Tunables of one replica, in ticks (the runtime decides how long a tick is)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    node_id: int
    node_ids: tuple[int, ...]
    """Every member of the group, this node included."""
    group_id: int = 1
    election_ticks: int = 10
    """A follower that hears no leader for a random time in [election_ticks, 2*election_ticks)
    starts an election."""
    heartbeat_ticks: int = 2
    learn_ticks: int = 10
    """How often a node with a gap asks a peer for chosen values (the seed's learningInterval)."""
    retry_ticks: int = 6
    """How often unchosen work (forwards, accepts, prepares) is sent again."""
    window: int = 32
    """Instances a leader keeps in flight at once; commands queue (and batch) behind them."""
    max_inflight_bytes: int = 4 * 1024 * 1024
    """...and payload bytes (``value_size``) in flight at once, past the first instance. A new
    leader's phase 1 gets every vote above a promiser's chosen prefix in one Promise, which must
    fit in one transport frame (the runtime passes a sixteenth of it: ``value_size`` counts
    characters, and UTF-8 takes up to 4 bytes for one). A leader that proposed 28
    commands of 900 KB and died before anyone learned them chosen left Promises of 25 MB that
    no 16 MiB frame carried: no node could lead the group again, even after restarts."""
    max_batch_commands: int = 512
    max_batch_bytes: int = 256 * 1024
    max_proposals_per_ready: int = 4
    """Instances one Ready proposes at most; the next Ready proposes more. Every node persists
    (and later applies) a Ready's instances in one turn of its writer, and a node sends no
    heartbeat while a turn is being written: a flood of queued commands proposed a whole
    window (32 full instances, 16,384 commands) at once, turns of 1-2.5 s on every node, and
    elections among healthy nodes."""
    max_pending: int = 100_000
    """Commands submitted on this node and not yet chosen; beyond that submit() fails fast."""
    learn_batch: int = 256
    """Chosen values per LearnReply (at most; see learn_max_bytes)."""
    learn_max_bytes: int = 1024 * 1024
    """Payload bytes per LearnReply, so a reply always fits in one transport frame."""
    cache_size: int = 4096
    """Chosen values kept in memory to serve catch-up without a storage read..."""
    cache_bytes: int = 8 * 1024 * 1024
    """...and at most this many payload bytes of them (``value_size``): with big batches 4,096
    instances are hundreds of thousands of commands, hundreds of MB of Python objects."""
    recent_request_ids: int = 20_000
    """Request ids of recently chosen commands a leader remembers, to drop late retries of them
    instead of putting them in the log again (the applier would skip them anyway)."""
    preferred_leader: int | None = None
    """The node that should lead this group when it is up and caught up: it campaigns first (its
    election timeout is drawn from the low end of the range) and a leader hands over to it. The
    runtime spreads groups' preferred leaders over the nodes so every node's CPU takes a share."""
    quorum_loss_ticks: int = 0
    """A leader that hears from no majority for this long steps down (0: 3 * election_ticks)."""

    def __post_init__(self) -> None:
        if self.node_id not in self.node_ids:
            raise LocalProtocolError(f"node {self.node_id} is not one of {self.node_ids}")
        if len(set(self.node_ids)) != len(self.node_ids):
            raise LocalProtocolError(f"duplicate node ids in {self.node_ids}")
        if self.election_ticks < 2 or self.heartbeat_ticks < 1:
            raise LocalProtocolError("election_ticks must be >= 2 and heartbeat_ticks >= 1")
        if self.heartbeat_ticks >= self.election_ticks:
            raise LocalProtocolError("heartbeat_ticks must be below election_ticks")
        if self.preferred_leader is not None and self.preferred_leader not in self.node_ids:
            raise LocalProtocolError(f"preferred leader {self.preferred_leader} is not a member")
        if (
            self.window < 1
            or self.max_batch_commands < 1
            or self.max_proposals_per_ready < 1
            or self.max_inflight_bytes < 1
        ):
            raise LocalProtocolError(
                "window, max_inflight_bytes, max_batch_commands and max_proposals_per_ready "
                "must be >= 1"
            )
        if self.learn_ticks < 1 or self.retry_ticks < 1 or self.quorum_loss_ticks < 0:
            raise LocalProtocolError(
                "learn_ticks and retry_ticks must be >= 1 and quorum_loss_ticks >= 0"
            )

    @property
    def quorum(self) -> int:
        return len(self.node_ids) // 2 + 1

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(n for n in self.node_ids if n != self.node_id)

    @property
    def quorum_loss_limit(self) -> int:
        return self.quorum_loss_ticks or 3 * self.election_ticks
