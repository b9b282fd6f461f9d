"""Comparing result digests with peers: whichever node finishes a window first, a difference is
found once, logged once and kept; windows of other sizes and stray messages are not compared."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from consensus.core import ResultDigest
from consensus.core.result_digest import Checkpoint
from consensus.runtime.divergence import DivergenceCheck
from tests.fixtures.logs import consensus_logs


@pytest.fixture(autouse=True)
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with consensus_logs(caplog):
        yield


def window(
    last: int, digest: int, size: int = 10, group_id: int = 1, state_checked: bool = False
) -> Checkpoint:
    return Checkpoint(group_id, last - size + 1, last, size, digest, state_checked)


def said(src: int, last: int, digest: int, size: int = 10, group_id: int = 1) -> ResultDigest:
    return ResultDigest(
        group_id=group_id,
        src=src,
        dst=1,
        first=last - size + 1,
        last=last,
        window=size,
        digest=digest,
    )


def test_finished_windows_are_sent_to_every_peer() -> None:
    check = DivergenceCheck(1, [1, 2, 3])
    messages = check.finished([window(10, 7)])
    assert [(m.dst, m.last, m.window, m.digest) for m in messages] == [
        (2, 10, 10, 7),
        (3, 10, 10, 7),
    ]


def exchange(check: DivergenceCheck, mine: Checkpoint, theirs: ResultDigest, peer_first: bool):
    """This node finishes ``mine`` and hears ``theirs``, in either order."""
    if peer_first:
        check.received(theirs)
    check.finished([mine])
    if not peer_first:
        check.received(theirs)


@pytest.mark.parametrize("peer_first", [True, False])
def test_the_same_digest_is_no_divergence_whoever_finishes_first(peer_first: bool) -> None:
    check = DivergenceCheck(1, [1, 2, 3])
    exchange(check, window(10, 7), said(2, 10, 7), peer_first)
    assert check.compared == 1
    assert check.divergences() == []


@pytest.mark.parametrize("peer_first", [True, False])
def test_a_different_digest_is_found_once_and_kept(
    peer_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    check = DivergenceCheck(1, [1, 2, 3])
    caplog.set_level(logging.ERROR, "consensus.runtime")
    exchange(check, window(10, 7), said(3, 10, 8), peer_first)
    check.finished([window(20, 9)])
    check.received(said(3, 20, 10))  # differs again: already said
    check.received(said(2, 20, 9))  # node 2 agrees
    [found] = check.divergences()
    assert (found.group_id, found.peer, found.first, found.last) == (1, 3, 1, 10)
    assert found.describe() == (
        "group 1: the state machine's results for instances 1..10 differ from node 3's (digest "
        "0000000000000007 against 0000000000000008): the nodes' state machines are not the same "
        "code or not deterministic, or a node's data was changed outside Paxos, and their state "
        "may differ"
    )
    assert [r.getMessage() for r in caplog.records] == [f"node 1: {found.describe()}"]


def test_an_alarm_clears_when_a_window_ending_with_a_state_check_agrees_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The odd node was rebuilt or repaired: the same state at a state check. A window of
    results only that agrees proves nothing about the state, and clears nothing."""
    check = DivergenceCheck(1, [1, 2, 3])
    exchange(check, window(10, 7), said(3, 10, 8), peer_first=False)
    exchange(check, window(20, 5), said(3, 20, 5), peer_first=True)
    assert [f.peer for f in check.divergences()] == [3]
    exchange(check, window(25, 6, size=5, state_checked=True), said(3, 25, 6, size=5), True)
    assert check.divergences() == []
    assert "node 3's state and results agree with this node's again" in caplog.text
    assert not check.odd_one_out(1)


def test_a_window_with_a_state_check_says_so_and_one_instance_is_named_once() -> None:
    check = DivergenceCheck(1, [1, 2])
    exchange(check, window(14, 1, size=2, state_checked=True), said(2, 14, 2, size=2), True)
    exchange(check, window(21, 1, size=1, group_id=2), said(2, 21, 2, size=1, group_id=2), True)
    first, second = (found.describe() for found in check.divergences())
    assert first.startswith(
        "group 1: the state machine's results for instances 13..14, or its state at the state "
        "check in instance 14, differ from node 2's"
    )
    assert second.startswith("group 2: the state machine's results for instance 21 differ")
    assert check.divergences()[0].as_json()["mine"] == "0000000000000001"


def test_an_agreeing_window_from_before_the_difference_clears_nothing() -> None:
    """A rebuilt node digests the log again from instance 1: its old windows say nothing of
    the state now."""
    check = DivergenceCheck(1, [1, 2])
    check.finished([window(10, 1, state_checked=True)])
    exchange(check, window(20, 7), said(2, 20, 8), peer_first=False)
    check.received(said(2, 10, 1))  # window 10 again, from the rebuilt node: the same
    assert [f.peer for f in check.divergences()] == [2]


def test_a_peer_ahead_is_compared_window_by_window_when_this_node_gets_there() -> None:
    check = DivergenceCheck(1, [1, 2], keep=2)
    for last in (10, 20, 30):
        check.received(said(2, last, last))
    check.finished([window(10, 10)])  # node 2's window 10 was dropped (keep=2): not compared
    assert check.compared == 0
    check.finished([window(20, 20)])
    check.finished([window(30, 99)])
    assert check.compared == 2
    assert [f.last for f in check.divergences()] == [30]


def test_only_a_node_that_disagrees_with_most_others_is_the_odd_one() -> None:
    five = DivergenceCheck(1, [1, 2, 3, 4, 5])
    five.finished([window(10, 7), window(10, 7, group_id=2)])
    for peer, digest in ((2, 8), (3, 9), (4, 7), (5, 7)):
        five.received(said(peer, 10, digest))
    assert not five.odd_one_out(1)  # 2 of 4 differ
    five.received(said(4, 10, 6, group_id=2))
    five.received(said(5, 10, 6, group_id=2))
    five.received(said(3, 10, 6, group_id=2))
    assert five.odd_one_out(2)  # 3 of 4 differ
    two = DivergenceCheck(1, [1, 2])
    two.finished([window(10, 7)])
    two.received(said(2, 10, 8))
    assert two.odd_one_out(1)  # who knows: unready


def test_windows_too_old_to_remember_and_of_other_groups_are_not_compared() -> None:
    check = DivergenceCheck(1, [1, 2], keep=2)
    check.finished([window(10, 1), window(20, 2), window(30, 3), window(10, 5, group_id=2)])
    check.received(said(2, 10, 666))  # forgotten
    check.received(said(2, 10, 5, group_id=2))
    check.received(said(2, 30, 3))
    assert check.compared == 2
    assert check.divergences() == []


def test_windows_of_another_size_are_not_compared_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = DivergenceCheck(1, [1, 2])
    caplog.set_level(logging.WARNING, "consensus.runtime")
    check.finished([window(20, 1)])
    check.received(said(2, 20, 2, size=20))
    check.received(said(2, 20, 2, size=20))
    assert check.compared == 0 and check.divergences() == []
    assert [r.getMessage() for r in caplog.records] == [
        "node 1: node 2 digests its results in windows of 20 instances, this node in windows of "
        "10: their results are not compared (set the same PAXOS_DIGEST_WINDOW on every node)"
    ]


def test_messages_from_unknown_nodes_or_for_another_node_are_ignored() -> None:
    check = DivergenceCheck(1, [1, 2])
    check.finished([window(10, 1)])
    check.received(said(9, 10, 2))
    check.received(ResultDigest(group_id=1, src=2, dst=3, first=1, last=10, window=10, digest=2))
    check.received(said(1, 10, 2))  # itself
    assert check.compared == 0 and check.divergences() == []
