"""What a replica needs from storage when it starts. Storage is read-only to the core: the core
never writes, it hands writes out in ``Ready.persist`` (etcd's ``Storage`` interface, same idea)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .ballot import ZERO_BALLOT, Ballot
from .messages import ChosenEntry, Value
from .ready import Persist


@dataclass(frozen=True, slots=True)
class StoredInstance:
    instance: int
    ballot: Ballot | None
    value: Value
    chosen: bool


@dataclass(frozen=True, slots=True)
class InitialState:
    """A replica's durable state: the promise, the contiguous chosen prefix ``1..chosen_upto``,
    every instance above it that holds a vote or is chosen, and a recent tail of chosen values
    (for serving catch-up from memory)."""

    promised: Ballot = ZERO_BALLOT
    chosen_upto: int = 0
    instances: tuple[StoredInstance, ...] = ()
    recent_chosen: tuple[ChosenEntry, ...] = ()
    rebuilding: bool = False
    """The storage is new and the node does not vote yet (rebuild.py). Storage that is created
    empty starts with this set; storage that existed before this flag did starts without."""
    rebuild_target: int | None = None
    """While rebuilding: the instance to know chosen before voting, once the peers told it."""
    audit: bool = False
    """The node restarts on this storage: before it votes, it asks its peers whether they saw it
    vote beyond what the storage holds (audit.py; a restored backup). The runtime sets it for
    storage it had before; a replica that starts without it votes at once."""


@dataclass
class MemoryStorage:
    """A dict-backed store of one group for the simulator and the tests; ``apply`` is atomic.

    ``rebuilding=True`` models a new database (the default models one that predates
    rebuilding, like the unit tests' replicas)."""

    promised: Ballot = ZERO_BALLOT
    instances: dict[int, StoredInstance] = field(default_factory=dict)
    rebuilding: bool = False
    rebuild_target: int | None = None

    def apply(self, persist: Persist) -> None:
        if persist.rebuild is not None:
            self.rebuilding = persist.rebuild.rebuilding
            self.rebuild_target = persist.rebuild.target
        if persist.promised is not None:
            self.promised = persist.promised
        for write in persist.accepted:
            old = self.instances.get(write.instance)
            if old is not None and old.chosen:
                self.instances[write.instance] = StoredInstance(
                    write.instance, write.ballot, old.value, True
                )
            else:
                self.instances[write.instance] = StoredInstance(
                    write.instance, write.ballot, write.value, False
                )
        for entry in persist.chosen:
            old = self.instances.get(entry.instance)
            ballot = old.ballot if old is not None else None
            self.instances[entry.instance] = StoredInstance(
                entry.instance, ballot, entry.value, True
            )

    def chosen_upto(self) -> int:
        upto = 0
        while (stored := self.instances.get(upto + 1)) is not None and stored.chosen:
            upto += 1
        return upto

    def chosen_values(self, first: int, last: int) -> list[ChosenEntry]:
        entries = []
        for instance in range(first, last + 1):
            stored = self.instances.get(instance)
            if stored is None or not stored.chosen:
                break
            entries.append(ChosenEntry(instance, stored.value))
        return entries

    def initial_state(self, recent: int = 1024) -> InitialState:
        upto = self.chosen_upto()
        above = tuple(sorted((s for i, s in self.instances.items() if i > upto), key=_by_instance))
        tail = self.chosen_values(max(1, upto - recent + 1), upto)
        return InitialState(
            self.promised,
            upto,
            above,
            tuple(tail),
            self.rebuilding,
            self.rebuild_target,
            audit=not self.rebuilding,  # as DjangoStorage.load: storage it had
        )


def _by_instance(stored: StoredInstance) -> int:
    return stored.instance
