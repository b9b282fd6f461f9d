"""The in-memory view of one group's log: votes, chosen marks, and the chosen prefix.

Invariants (checked by the simulator, relied on everywhere):
- ``chosen_upto`` only grows; instances ``1..chosen_upto`` are chosen.
- ``entries`` holds every instance above ``chosen_upto`` that has a vote or is chosen; instances at
  or below it live only in the bounded ``recent`` cache (older ones are in storage).
- A chosen value never changes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .ballot import Ballot
from .messages import AcceptedEntry, ChosenEntry, Value, value_size
from .storage import InitialState


@dataclass(slots=True)
class Entry:
    ballot: Ballot | None
    """The highest ballot this node voted for in this instance (None: learned, never voted)."""
    value: Value
    chosen: bool = False


class InstanceLog:
    def __init__(
        self, state: InitialState, cache_size: int, cache_bytes: int | None = None
    ) -> None:
        self.chosen_upto = state.chosen_upto
        self.entries: dict[int, Entry] = {
            stored.instance: Entry(stored.ballot, stored.value, stored.chosen)
            for stored in state.instances
        }
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self.recent: OrderedDict[int, Value] = OrderedDict()
        self._recent_bytes = 0
        for entry in state.recent_chosen:
            self._cache(entry.instance, entry.value)
        self._trim_cache()

    @property
    def first_unchosen(self) -> int:
        return self.chosen_upto + 1

    def highest_instance(self) -> int:
        return max(self.entries, default=self.chosen_upto)

    def is_chosen(self, instance: int) -> bool:
        if instance <= self.chosen_upto:
            return True
        entry = self.entries.get(instance)
        return entry is not None and entry.chosen

    def chosen_value(self, instance: int) -> Value | None:
        """The chosen value if it is in memory (None when unknown or only in storage)."""
        if instance <= self.chosen_upto:
            return self.recent.get(instance)
        entry = self.entries.get(instance)
        return entry.value if entry is not None and entry.chosen else None

    def record_vote(self, instance: int, ballot: Ballot, value: Value) -> None:
        entry = self.entries.get(instance)
        if entry is not None and entry.chosen:
            entry.ballot = ballot  # same value (the caller checked); only the ballot moves on
        else:
            self.entries[instance] = Entry(ballot, value)

    def mark_chosen(self, instance: int, value: Value) -> bool:
        """Record that ``value`` is chosen. Returns False if it already was."""
        if self.is_chosen(instance):
            return False
        entry = self.entries.get(instance)
        if entry is None:
            self.entries[instance] = Entry(None, value, chosen=True)
        else:
            entry.value = value
            entry.chosen = True
        return True

    def advance_prefix(self) -> list[ChosenEntry]:
        """Move ``chosen_upto`` over newly contiguous chosen instances; return them in order."""
        committed = []
        while (entry := self.entries.get(self.chosen_upto + 1)) is not None and entry.chosen:
            self.chosen_upto += 1
            del self.entries[self.chosen_upto]
            self._cache(self.chosen_upto, entry.value)
            committed.append(ChosenEntry(self.chosen_upto, entry.value))
        if committed:
            self._trim_cache()
        return committed

    def votes_from(self, first_instance: int) -> tuple[AcceptedEntry, ...]:
        """Every vote or chosen value at or above ``first_instance`` (above the chosen prefix)."""
        start = max(first_instance, self.chosen_upto + 1)
        return tuple(
            AcceptedEntry(instance, entry.ballot, entry.value, entry.chosen)
            if entry.ballot is not None
            else AcceptedEntry(instance, _CHOSEN_ONLY, entry.value, True)
            for instance, entry in sorted(self.entries.items())
            if instance >= start
        )

    def cached_range(self, first: int, last: int, max_bytes: int) -> list[ChosenEntry] | None:
        """Chosen values first..last from memory (fewer if they pass ``max_bytes``; at least
        one), or None if the start of the range is no longer cached."""
        result = []
        size = 0
        for instance in range(first, last + 1):
            value = self.chosen_value(instance)
            if value is None:
                return None if instance <= self.chosen_upto and not result else result
            size += value_size(value)
            if result and size > max_bytes:
                break
            result.append(ChosenEntry(instance, value))
        return result

    def _cache(self, instance: int, value: Value) -> None:
        self.recent[instance] = value
        self._recent_bytes += value_size(value)

    def _trim_cache(self) -> None:
        """Drop the oldest cached values beyond ``cache_size`` values or ``cache_bytes`` bytes
        (the newest one always stays)."""
        limit = self._cache_bytes
        while len(self.recent) > self._cache_size or (
            limit is not None and self._recent_bytes > limit and len(self.recent) > 1
        ):
            _instance, value = self.recent.popitem(last=False)
            self._recent_bytes -= value_size(value)


_CHOSEN_ONLY = Ballot(0, 0)
"""Ballot reported for a chosen value this node learned without voting: the value is chosen, so a
new leader that sees the ``chosen`` flag adopts it whatever the ballot."""
