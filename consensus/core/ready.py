"""``Ready``: the single output contract of a replica, modelled on etcd's raft ``Ready``.

THE RULE: everything in ``Ready.persist`` must be durable before any of ``Ready.messages`` leaves
the node, and before ``Ready.committed`` is applied. A Promise or Accepted is a vote; sending it and
then forgetting it in a crash lets two different values be chosen for one instance.

The API enforces the rule instead of trusting the caller:
- ``messages`` (votes and everything else that reports durable state) raises until the caller has
  called ``mark_persisted()``;
- ``eager_messages`` may go out at once, before or while the write runs: proposals, heartbeats,
  forwards and catch-up traffic state facts (a ballot already promised durably, values already
  chosen) and cast no vote. Sending a leader's Accepts while its own vote is being written is the
  Raft thesis' §10.2.1 optimization: the disk write and the network round trip overlap;
- votes a replica casts for itself are never handed out at all: the replica keeps them and counts
  them inside ``advance()``, which also refuses a Ready that was not marked persisted;
- a second ``ready()`` before ``advance()`` raises, so Readies are persisted in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ballot import Ballot
from .errors import LocalProtocolError
from .messages import ChosenEntry, Message, Value


@dataclass(frozen=True, slots=True)
class AcceptedWrite:
    instance: int
    ballot: Ballot
    value: Value


@dataclass(frozen=True, slots=True)
class RebuildWrite:
    """A change of a rebuilding node's state (rebuild.py): ``target`` is the instance it must know
    chosen before it votes again; ``None`` means it votes again, unless ``started``: its storage
    was just found older than its votes (audit.py) and it rebuilds, target not known yet."""

    target: int | None
    started: bool = False

    @property
    def rebuilding(self) -> bool:
        return self.target is not None or self.started


@dataclass(frozen=True, slots=True)
class Persist:
    """State to make durable, in one transaction: the acceptor's promise, its new votes, and the
    instances newly known to be chosen (chosen marks may be lost in a crash: they are learned
    again)."""

    promised: Ballot | None = None
    accepted: tuple[AcceptedWrite, ...] = ()
    chosen: tuple[ChosenEntry, ...] = ()
    rebuild: RebuildWrite | None = None

    def __bool__(self) -> bool:
        return (
            self.promised is not None
            or bool(self.accepted)
            or bool(self.chosen)
            or self.rebuild is not None
        )

    @property
    def must_sync(self) -> bool:
        """True when the write holds a vote (or a rebuilding node's step towards voting), which
        must hit the disk before replies go out."""
        return self.promised is not None or bool(self.accepted) or self.rebuild is not None


@dataclass(frozen=True, slots=True)
class LogRead:
    """Ask the caller to read chosen values from storage and send them to ``dst`` as a LearnReply.
    The replica keeps only a bounded tail of the log in memory; older catch-up goes through here."""

    dst: int
    first_instance: int
    last_instance: int


@dataclass(frozen=True, slots=True)
class Failed:
    request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local state machine has applied ``index``."""

    read_id: int
    index: int


@dataclass(slots=True)
class Ready:
    group_id: int
    persist: Persist
    _messages: tuple[Message, ...]
    eager_messages: tuple[Message, ...] = ()
    """Messages that do not depend on ``persist``: send them right away."""
    committed: tuple[ChosenEntry, ...] = ()
    """Instances newly chosen in order (contiguous after the previous Ready's): apply these."""
    log_reads: tuple[LogRead, ...] = ()
    resolved: tuple[str, ...] = ()
    """Request ids submitted on this node that are now chosen."""
    failed: tuple[Failed, ...] = ()
    """Request ids submitted on this node that the replica refused (e.g. overloaded)."""
    reads: tuple[ReadState, ...] = ()
    """Read indexes confirmed for ``Replica.read_index`` calls."""
    _persisted: bool = field(default=False, repr=False)

    def mark_persisted(self) -> None:
        """Declare that ``persist`` is durable. Only then may messages be sent."""
        self._persisted = True

    @property
    def persisted(self) -> bool:
        return self._persisted

    @property
    def messages(self) -> tuple[Message, ...]:
        if not self._persisted:
            raise LocalProtocolError("persist the Ready (and call mark_persisted()) before sending")
        return self._messages
