"""``ApplicationBacklog``: chosen commands a node applies later, because nobody on it waits yet.

A follower learns that instance N is chosen from the leader's next Accept, in the same turn in
which it votes for instance N+1. Applying N in that turn puts the state machine's work into the
vote's transaction, before the fsync and before the vote can leave: every client of the cluster
waits for it, and nobody needs it, since no client of this node waits for N. So a turn that
holds votes leaves the applications of the groups nobody on this node waits for in the backlog,
and the next turn without votes (a clock tick comes every ``tick_ms``), or the first turn in
which somebody waits, applies the backlog first and then the new ones, in log order.

Nothing else changes: ``PaxosNode.applied`` moves only when an application commits, and a read
waits for it as before, so a read never sees less than its read index. The limits bound how
far the state machine falls behind (``/readyz`` tolerates ``PAXOS_READY_MAX_LAG`` = 100
instances) and how much memory the backlog holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consensus.core import ChosenEntry
from consensus.core.messages import value_size

MAX_INSTANCES = 64
MAX_COMMANDS = 4096
MAX_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class _Held:
    entries: list[ChosenEntry] = field(default_factory=list)
    commands: int = 0
    bytes: int = 0

    def add(self, entries: Iterable[ChosenEntry]) -> None:
        for entry in entries:
            self.entries.append(entry)
            self.commands += len(entry.value)
            self.bytes += value_size(entry.value)


@dataclass(slots=True)
class ApplicationBacklog:
    max_instances: int = MAX_INSTANCES
    max_commands: int = MAX_COMMANDS
    max_bytes: int = MAX_BYTES
    _held: dict[int, _Held] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self._held)

    def held(self, group_id: int) -> int:
        """Instances of ``group_id`` held back."""
        held = self._held.get(group_id)
        return len(held.entries) if held is not None else 0

    def release(
        self,
        committed: Iterable[tuple[int, tuple[ChosenEntry, ...]]],
        may_hold: Callable[[int], bool],
    ) -> list[tuple[int, tuple[ChosenEntry, ...]]]:
        """What to apply in this turn, per group, in log order: every group's held entries
        followed by its newly ``committed`` ones, except for the groups ``may_hold`` lets wait
        (while they stay within the limits): their new entries join the backlog instead.

        Every group with held entries is decided, committed ones this turn or not, so a turn
        without votes (``may_hold`` always false) applies the whole backlog."""
        new: dict[int, list[ChosenEntry]] = {}
        for group_id, entries in committed:
            new.setdefault(group_id, []).extend(entries)
        applying: list[tuple[int, tuple[ChosenEntry, ...]]] = []
        for group_id in sorted(new.keys() | self._held.keys()):
            held = self._held.pop(group_id, None) or _Held()
            held.add(new.get(group_id, ()))
            if not held.entries:
                continue
            within = (
                len(held.entries) <= self.max_instances
                and held.commands <= self.max_commands
                and held.bytes <= self.max_bytes
            )
            if within and may_hold(group_id):
                self._held[group_id] = held
            else:
                applying.append((group_id, tuple(held.entries)))
        return applying
