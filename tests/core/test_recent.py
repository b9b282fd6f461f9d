"""``RecentlyChosen`` (consensus/core/recent.py): which request ids this node saw chosen."""

from __future__ import annotations

from consensus.core.messages import Command
from consensus.core.recent import RecentlyChosen


def chosen(recent: RecentlyChosen, instance: int, *request_ids: str) -> None:
    recent.record(instance, tuple(Command(rid, "x") for rid in request_ids))


def test_a_request_id_chosen_again_keeps_its_first_instance() -> None:
    """Its stored result is the first instance's: a pruning marker that deletes that result
    makes a later retry a new command again, which it could not be while the repeat's instance
    kept the id remembered (the retry then waited for an application that had happened)."""
    recent = RecentlyChosen(limit=10)
    chosen(recent, 5, "r")
    chosen(recent, 9, "r")  # a retry that raced the first attempt, chosen again
    assert recent.get("r") == 5
    recent.forget_before(6)
    assert "r" not in recent


def test_learned_out_of_order_the_earlier_instance_wins() -> None:
    recent = RecentlyChosen(limit=10)
    chosen(recent, 9, "r")
    chosen(recent, 5, "r")
    assert recent.get("r") == 5


def test_only_the_newest_ids_are_kept() -> None:
    recent = RecentlyChosen(limit=2)
    chosen(recent, 1, "a")
    chosen(recent, 2, "b", "c")
    assert "a" not in recent and len(recent) == 2
