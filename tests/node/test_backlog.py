"""``ApplicationBacklog``: what a turn applies, and in which order."""

from __future__ import annotations

from consensus.core import ChosenEntry, Command
from consensus.runtime.backlog import ApplicationBacklog


def entry(instance: int, commands: int = 1, size: int = 10) -> ChosenEntry:
    return ChosenEntry(
        instance, tuple(Command(f"r{instance}-{i}", "x" * size) for i in range(commands))
    )


def instances(applying: list[tuple[int, tuple[ChosenEntry, ...]]]) -> dict[int, list[int]]:
    return {group_id: [e.instance for e in entries] for group_id, entries in applying}


def hold_all(group_id: int) -> bool:
    return True


def hold_none(group_id: int) -> bool:
    return False


def test_without_holding_a_turn_applies_what_it_committed() -> None:
    backlog = ApplicationBacklog()
    applying = backlog.release([(1, (entry(1), entry(2))), (2, (entry(1),))], hold_none)
    assert instances(applying) == {1: [1, 2], 2: [1]}
    assert not backlog


def test_held_entries_are_applied_first_when_the_group_is_released() -> None:
    backlog = ApplicationBacklog()
    assert backlog.release([(1, (entry(1), entry(2)))], hold_all) == []
    assert backlog.release([(1, (entry(3),))], hold_all) == []
    assert backlog.held(1) == 3
    applying = backlog.release([(1, (entry(4),))], hold_none)
    assert instances(applying) == {1: [1, 2, 3, 4]}
    assert backlog.held(1) == 0 and not backlog


def test_a_turn_without_new_entries_still_releases_the_backlog() -> None:
    """A turn without votes (a clock tick) applies what earlier vote turns held."""
    backlog = ApplicationBacklog()
    backlog.release([(1, (entry(1),)), (2, (entry(7),))], hold_all)
    assert instances(backlog.release([], hold_none)) == {1: [1], 2: [7]}


def test_groups_are_decided_one_by_one() -> None:
    backlog = ApplicationBacklog()
    applying = backlog.release([(1, (entry(1),)), (2, (entry(1),))], lambda group_id: group_id == 2)
    assert instances(applying) == {1: [1]}
    assert backlog.held(2) == 1
    assert instances(backlog.release([(1, (entry(2),))], lambda g: g == 2)) == {1: [2]}
    assert backlog.held(2) == 1


def test_a_group_given_twice_in_one_turn_stays_in_log_order() -> None:
    backlog = ApplicationBacklog()
    applying = backlog.release([(1, (entry(1),)), (1, (entry(2), entry(3)))], hold_none)
    assert instances(applying) == {1: [1, 2, 3]}


def test_the_limits_release_a_group_that_holds_too_much() -> None:
    """At most ``max_instances`` (below /readyz's lag of 100), commands or bytes wait."""
    by_instances = ApplicationBacklog(max_instances=3)
    assert by_instances.release([(1, (entry(1), entry(2), entry(3)))], hold_all) == []
    assert instances(by_instances.release([(1, (entry(4),))], hold_all)) == {1: [1, 2, 3, 4]}

    by_commands = ApplicationBacklog(max_commands=10)
    assert by_commands.release([(1, (entry(1, commands=10),))], hold_all) == []
    assert instances(by_commands.release([(1, (entry(2),))], hold_all)) == {1: [1, 2]}

    by_bytes = ApplicationBacklog(max_bytes=1000)
    assert instances(by_bytes.release([(1, (entry(1, size=2000),))], hold_all)) == {1: [1]}
