"""The DESIGN.md §6 invariants, checked as the simulation runs.

1. Agreement: no two nodes learn different values for one (group, instance).
2. Validity: every chosen command was submitted by a client (no-ops are empty batches).
3. Order and exactly-once: each node applies instances 1..k in order, and each request id once,
   so every node's sequence of applied commands is a prefix of one common sequence.
4. Promises never go backwards: after a restart a node's promise is at least every ballot it
   ever voted in (a Promise or Accepted it sent, or a vote it counted for itself, below), and a
   persisted promise never decreases. Votes are durable: after a restart a node still holds, for
   every Accepted it sent and every vote of its own it counted, a vote in that ballot or a later
   one (or knows the instance is chosen).
   Own votes count only once durable: a candidate's promise to itself and a leader's vote for its
   own proposal never leave the node as messages, so the checks above, fed by the network, never
   saw them (the restart audit, core/audit.py, noticed their loss only if a peer that saw the
   Prepare or a Heartbeat was still up). The replica holds them back and counts them in
   ``Replica.advance``, which the driver calls after the Ready that holds their writes was
   persisted; the cluster watches them there (``on_own_vote_counted``): when a node counts one,
   its storage must hold it already (a promise of at least that ballot, and for a vote, a vote in
   it or a later ballot or the instance chosen), and from then on it counts as a vote above.
5. Liveness (checked by the cluster at the end): after healing, every submitted command is chosen.
6. Linearizable reads: a read index is at least every instance applied anywhere (so acknowledged
   to some client) before the read began (checked by the cluster as reads complete).
7. Quorum: the first node to learn a value chosen learns it only once a majority of the nodes
   voted for that value in one ballot (Paxos' definition of chosen; agreement rests on it).
   Checked directly, a leader that counts the wrong votes is caught when it claims a value,
   not only in the rare runs where a second value gets chosen afterwards (the any-ballot-acks
   mutant). A vote counts as cast when a replica hands it out in a Ready, durable or not:
   losing a vote is rule 4's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.core import Ballot, Command, MemoryStorage, Value
from consensus.core.result_digest import Checkpoint


class InvariantViolation(AssertionError):
    """One of the invariants broke; the message says which and where."""


@dataclass
class Checker:
    chosen: dict[tuple[int, int], Value] = field(default_factory=dict)
    submitted: dict[str, str] = field(default_factory=dict)
    result_windows: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    """(group, window's last instance) -> the first node that finished it, and its digest."""
    applied_sequence: dict[int, list[str]] = field(default_factory=dict)
    """Per group: the common order of applied request ids (the longest prefix any node reached)."""
    voted: dict[tuple[int, int], Ballot] = field(default_factory=dict)
    """Highest ballot each (node, group) ever voted in: a Promise or Accepted it sent a peer, or
    a promise or vote it gave itself and counted (rule 4)."""
    persisted_promise: dict[tuple[int, int], Ballot] = field(default_factory=dict)
    accepted_votes: dict[tuple[int, int], dict[int, Ballot]] = field(default_factory=dict)
    """Per (node, group): the highest ballot of each instance's vote the node sent a peer (an
    Accepted) or counted for itself (a leader's vote for its own proposal)."""
    quorum: int = 1
    """A majority of the nodes (rule 7)."""
    cast: dict[tuple[int, int], dict[tuple[Ballot, Value], set[int]]] = field(default_factory=dict)
    """Per (group, instance): the nodes that ever voted for each (ballot, value). Never forgotten,
    not even when a node's disk is replaced: those votes were cast."""

    def on_submit(self, command: Command) -> None:
        self.submitted[command.request_id] = command.payload

    def on_vote_cast(
        self, node_id: int, group_id: int, instance: int, ballot: Ballot, value: Value
    ) -> None:
        """A replica voted (an ``AcceptedWrite`` in its Ready), its own proposal or a peer's."""
        votes = self.cast.setdefault((group_id, instance), {})
        votes.setdefault((ballot, value), set()).add(node_id)

    def on_chosen(self, node_id: int, group_id: int, instance: int, value: Value) -> None:
        if (group_id, instance) not in self.chosen:
            self._check_quorum(node_id, group_id, instance, value)
        known = self.chosen.setdefault((group_id, instance), value)
        if known != value:
            raise InvariantViolation(
                f"agreement: node {node_id} learned a different value for group {group_id} "
                f"instance {instance}: {_show(value)} != {_show(known)}"
            )
        for command in value:
            if self.submitted.get(command.request_id) != command.payload:
                raise InvariantViolation(
                    f"validity: group {group_id} instance {instance} holds command "
                    f"{command.request_id!r} that no client submitted"
                )

    def _check_quorum(self, node_id: int, group_id: int, instance: int, value: Value) -> None:
        votes = self.cast.get((group_id, instance), {})
        if any(v == value and len(nodes) >= self.quorum for (_b, v), nodes in votes.items()):
            return
        for_value = {
            str(ballot): sorted(nodes) for (ballot, v), nodes in votes.items() if v == value
        }
        raise InvariantViolation(
            f"quorum: node {node_id} learned {_show(value)} chosen in group {group_id} instance "
            f"{instance}, but no {self.quorum} nodes voted for it in one ballot (votes for it, "
            f"by ballot: {for_value or 'none'})"
        )

    def on_applied(self, node_id: int, group_id: int, position: int, request_id: str) -> None:
        sequence = self.applied_sequence.setdefault(group_id, [])
        if position < len(sequence):
            if sequence[position] != request_id:
                raise InvariantViolation(
                    f"order: node {node_id} applied {request_id!r} at position {position} of "
                    f"group {group_id}, others applied {sequence[position]!r}"
                )
        elif position == len(sequence):
            sequence.append(request_id)
        else:
            raise InvariantViolation(f"order: node {node_id} skipped positions in group {group_id}")

    def on_vote_sent(
        self, node_id: int, group_id: int, ballot: Ballot, instance: int | None = None
    ) -> None:
        """A node sent a peer a Promise (``instance`` None) or an Accepted."""
        self._record_vote(node_id, group_id, ballot, instance)

    def on_own_vote_counted(
        self,
        node_id: int,
        group_id: int,
        ballot: Ballot,
        instance: int | None,
        storage: MemoryStorage,
    ) -> None:
        """A node counts a vote it gave itself: a candidate's Promise of its own ballot
        (``instance`` None) or a leader's Accepted of its own proposal, held back by the replica
        until ``advance`` (rule 4). ``storage`` is the node's disk now: it must hold the vote."""
        if storage.promised < ballot:
            what = "promise" if instance is None else f"vote for instance {instance}"
            raise InvariantViolation(
                f"own vote not durable: node {node_id} group {group_id} counted its own {what} "
                f"in ballot {ballot}, but its storage promises only {storage.promised}"
            )
        if instance is not None and not _holds_vote(storage, instance, ballot):
            stored = storage.instances.get(instance)
            held = "no vote" if stored is None else f"a vote in ballot {stored.ballot}"
            raise InvariantViolation(
                f"own vote not durable: node {node_id} group {group_id} counted its own vote "
                f"in ballot {ballot} for instance {instance}, but its storage holds {held} there"
            )
        self._record_vote(node_id, group_id, ballot, instance)

    def _record_vote(
        self, node_id: int, group_id: int, ballot: Ballot, instance: int | None
    ) -> None:
        key = (node_id, group_id)
        if key not in self.voted or ballot > self.voted[key]:
            self.voted[key] = ballot
        if instance is not None:
            votes = self.accepted_votes.setdefault(key, {})
            if instance not in votes or ballot > votes[instance]:
                votes[instance] = ballot

    def on_recover(self, node_id: int, group_id: int, storage: MemoryStorage) -> None:
        """A node restarts on ``storage``: it must still hold every vote it sent or counted."""
        for instance, ballot in self.accepted_votes.get((node_id, group_id), {}).items():
            if _holds_vote(storage, instance, ballot):
                continue
            raise InvariantViolation(
                f"durability: node {node_id} group {group_id} restarted without its vote in "
                f"ballot {ballot} for instance {instance}"
            )

    def on_result_window(self, node_id: int, window: Checkpoint) -> None:
        """Every node's results for the same window of a group's log digest alike (the runtime
        compares them between nodes, ``consensus.runtime.divergence``): however its turns split
        the log, through crashes and replaced disks."""
        key = (window.group_id, window.last)
        first = self.result_windows.setdefault(key, (node_id, window.digest))
        if first[1] != window.digest:
            raise InvariantViolation(
                f"result digests: node {node_id}'s results for group {window.group_id} instances "
                f"{window.first}..{window.last} differ from node {first[0]}'s"
            )

    def forget_node(self, node_id: int) -> None:
        """The node's storage was replaced: what it voted and promised before is gone (by the
        nemesis's hand, not by a bug), so rule 4 starts over for it."""
        for table in (self.voted, self.persisted_promise, self.accepted_votes):
            for key in [key for key in table if key[0] == node_id]:
                del table[key]

    def on_persisted_promise(self, node_id: int, group_id: int, ballot: Ballot) -> None:
        key = (node_id, group_id)
        before = self.persisted_promise.get(key)
        if before is not None and ballot < before:
            raise InvariantViolation(
                f"promise: node {node_id} group {group_id} persisted {ballot} after {before}"
            )
        self.persisted_promise[key] = ballot

    def on_restart(self, node_id: int, group_id: int, promised: Ballot) -> None:
        voted = self.voted.get((node_id, group_id))
        if voted is not None and promised < voted:
            raise InvariantViolation(
                f"promise went backwards: node {node_id} group {group_id} restarted with promise "
                f"{promised} after voting in ballot {voted}"
            )


def _holds_vote(storage: MemoryStorage, instance: int, ballot: Ballot) -> bool:
    """Whether ``storage`` holds a vote in ``ballot`` or a later one for ``instance``, or knows
    the instance is chosen (which makes every vote in it moot)."""
    stored = storage.instances.get(instance)
    return stored is not None and (
        stored.chosen or (stored.ballot is not None and stored.ballot >= ballot)
    )


def _show(value: Value) -> str:
    return "[" + ",".join(command.request_id for command in value) + "]"
