"""``ReadAsks`` (a follower's ReadIndex asks) and ``RecentlyChosen`` on their own; the replica's
tests cover them in context."""

from __future__ import annotations

from consensus.core.messages import Command
from consensus.core.reads import ReadAsks
from consensus.core.ready import ReadState
from consensus.core.recent import RecentlyChosen


def test_reads_that_start_while_an_ask_is_in_flight_share_the_next_ask() -> None:
    asks = ReadAsks(first_token=100)
    asks.start(1, now=0)
    asks.queue(1)
    assert asks.next_ask() == 100
    asks.start(2, now=1)
    asks.queue(2)
    asks.start(3, now=1)
    asks.queue(3)
    assert asks.next_ask() is None  # one ask in flight at a time
    assert asks.on_reply(100, index=7)
    assert asks.completed == [ReadState(1, 7)]  # read 2 began after ask 100 left: not covered
    assert asks.next_ask() == 101
    assert asks.on_reply(101, index=9)
    assert asks.completed == [ReadState(1, 7), ReadState(2, 9), ReadState(3, 9)]
    assert asks.pending == {}


def test_a_late_reply_to_an_earlier_ask_still_completes_its_reads() -> None:
    asks = ReadAsks(first_token=1)
    asks.start(1, now=0)
    asks.queue(1)
    assert asks.next_ask() == 1
    assert asks.requeue() == [1]  # no answer in time: ask again
    asks.queue(1)
    assert asks.next_ask() == 2
    assert asks.on_reply(1, index=5)  # the first ask's answer, late: still valid for read 1
    assert asks.completed == [ReadState(1, 5)]
    assert asks.on_reply(2, index=6)  # ours, but its read is done: nothing more completes
    assert asks.completed == [ReadState(1, 5)]


def test_a_reply_with_a_token_it_never_sent_is_ignored() -> None:
    asks = ReadAsks(first_token=50)
    asks.start(1, now=0)
    asks.queue(1)
    asks.next_ask()
    assert not asks.on_reply(49, index=3)  # e.g. addressed to a previous incarnation
    assert asks.completed == [] and asks.pending == {1: 0}


def test_retry_due_renews_every_pending_read() -> None:
    asks = ReadAsks(first_token=1)
    asks.start(1, now=0)
    asks.start(2, now=5)
    assert not asks.retry_due(horizon=-1, now=6)
    assert asks.retry_due(horizon=0, now=6)
    assert asks.pending == {1: 6, 2: 6}


def test_recently_chosen_keeps_the_newest_ids() -> None:
    recent = RecentlyChosen(limit=3)
    recent.record(1, (Command("a", "x"), Command("b", "x")))
    recent.record(2, (Command("c", "x"), Command("d", "x")))
    assert "a" not in recent and len(recent) == 3
    assert recent.get("b") == 1 and recent.get("d") == 2
    recent.forget_before(2)
    assert "b" not in recent and "c" in recent
