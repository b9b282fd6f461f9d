"""What a running node takes and answers: retries of a request id (answered with the first result
while it is stored, applied again once a pruning marker deleted it: storage/pruning.py), request
ids reused for other commands, and commands too large to replicate."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from consensus.config import GroupSpec
from consensus.core import Command
from consensus.models import RequestResult
from consensus.runtime import (
    CommandTooLargeError,
    InvalidRequestIdError,
    NoQuorumError,
    RequestIdReusedError,
    SubmitError,
)
from consensus.runtime.apply import PRUNE_PREFIX, Outcome
from consensus.statemachine import ApplyContext, StateMachine
from kvstore.models import Entry
from tests.fixtures.loop_node import LoopNode, one_node_config, running_node, wait_until_applied

pytestmark = pytest.mark.django_db(transaction=True)


def put(key: str, value: str) -> str:
    return json.dumps({"op": "put", "key": key, "value": value})


def test_a_retry_is_a_duplicate_until_its_result_is_pruned_then_applied_again(
    loop_node: LoopNode,
) -> None:
    node = loop_node.node
    first = loop_node.call(node.submit(1, put("k", "v1"), "client-1"))
    again = loop_node.call(node.submit(1, put("k", "v1"), "client-1"))
    assert (again.duplicate, again.instance) == (True, first.instance)
    marker = loop_node.call(node.submit(1, str(first.instance + 1), f"{PRUNE_PREFIX}test"))
    wait_until_applied(node, marker.instance)  # answers leave before their turn commits
    assert not RequestResult.objects.filter(request_id="client-1").exists()
    retried = loop_node.call(node.submit(1, put("k", "v1"), "client-1", timeout=5.0))
    assert not retried.duplicate
    assert retried.instance > first.instance


def test_a_retry_whose_result_is_pruned_while_it_is_looked_up_is_proposed(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node saw the request id chosen, so it looks the result up instead of proposing it;
    a pruning marker applied meanwhile deletes the row. The command is then new again."""
    node = loop_node.node
    first = loop_node.call(node.submit(1, put("k", "v1"), "client-1"))
    replica = node.replicas[1]
    original = node.applier.lookup

    def lookup_while_pruning(group_id: int, request_id: str) -> Any:
        # What the marker's application does, in the order it does it: the rows go, and the
        # loop hears of the cutoff before it gets this look-up's answer.
        RequestResult.objects.filter(group_id=group_id, instance__lte=first.instance).delete()
        loop_node.loop.call_soon_threadsafe(replica.forget_chosen_before, first.instance + 1)
        return original(group_id, request_id)

    monkeypatch.setattr(node.applier, "lookup", lookup_while_pruning)

    async def retry() -> Any:
        assert replica.was_chosen_recently("client-1")
        return await asyncio.wait_for(node.submit_nowait(1, put("k", "v1"), "client-1"), 5.0)

    retried = loop_node.call(retry())
    assert not retried.duplicate
    assert retried.instance > first.instance


def test_a_request_id_reused_for_another_command_is_refused(loop_node: LoopNode) -> None:
    """A retry must be the same command (the same JSON will do); a client whose counter of
    request ids started again must hear that its new write was not made."""
    node = loop_node.node
    first = loop_node.call(node.submit(1, put("k", "v1"), "client-1"))
    same = json.dumps({"value": "v1", "key": "k", "op": "put"}, indent=1)
    assert loop_node.call(node.submit(1, same, "client-1")).instance == first.instance
    with pytest.raises(RequestIdReusedError, match="already used for a different command"):
        loop_node.call(node.submit(1, put("k", "v2"), "client-1"))

    async def stream_retry() -> Any:  # the client stream's path: no look-up before
        return await asyncio.wait_for(node.submit_nowait(1, put("k", "v2"), "client-1"), 5)

    with pytest.raises(RequestIdReusedError):
        loop_node.call(stream_retry())
    assert Entry.objects.get(group_id=1, key="k").value == "v1"


def test_a_retry_of_a_command_chosen_here_before_is_a_duplicate_even_if_applied_later(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower that saw the command chosen but has not applied it yet (its backlog) answers
    the retry from that first application: the answer must still say duplicate."""
    node = loop_node.node
    first = loop_node.call(node.submit(1, put("k", "v1"), "client-1"))
    monkeypatch.setattr(node, "_stored_outcome", lambda *args: None)  # not applied here yet

    async def retry() -> Any:
        future = node.submit_nowait(1, put("k", "v1"), "client-1")
        await asyncio.sleep(0.05)
        node._waiters.resolve(first)  # the first application, as the applier reports it
        return await asyncio.wait_for(future, 5)

    again = loop_node.call(retry())
    assert again.duplicate
    assert (again.instance, again.result) == (first.instance, first.result)


def test_a_request_id_the_results_table_cannot_hold_is_refused_before_it_is_proposed(
    loop_node: LoopNode,
) -> None:
    """Every way in goes through ``submit``/``submit_nowait``; proposed, such an id stopped every
    node (PostgreSQL) at its instance."""
    node = loop_node.node
    assert loop_node.call(node.submit(1, "x", "r" * 255)).instance >= 1
    for request_id in ("r" * 256, "a\x00b", "\ud800"):
        with pytest.raises(InvalidRequestIdError):
            loop_node.call(node.submit(1, "x", request_id))

    async def through_the_stream() -> Any:
        return node.submit_nowait(1, "x", "r" * 256)

    with pytest.raises(InvalidRequestIdError, match="1..255 characters"):
        loop_node.call(through_the_stream())


def test_a_command_too_large_for_a_peer_frame_is_refused_before_it_is_proposed(
    loop_node: LoopNode,
) -> None:
    node = loop_node.node
    assert node.max_command_bytes <= node.max_frame_size // 2
    node.max_command_bytes = 1000
    assert loop_node.call(node.submit(1, "x" * 1000)).instance >= 1
    for payload in ("x" * 1001, "é" * 501):  # bytes, not characters
        with pytest.raises(CommandTooLargeError, match="limit 1000 bytes"):
            loop_node.call(node.submit(1, payload))

    async def through_the_stream() -> Any:
        return node.submit_nowait(1, "x" * 1001, "big-1")

    with pytest.raises(CommandTooLargeError):
        loop_node.call(through_the_stream())


class Slow(StateMachine):
    """Takes 1.5 s to apply: longer than the node's request timeout below."""

    durable = False

    def apply(self, command: str, context: ApplyContext) -> Any:
        time.sleep(1.5)
        return {"slept": True}


def test_a_command_chosen_but_applied_late_says_so(tmp_path: Path) -> None:
    """A command whose application outlasts the request timeout was answered "leader 1 did not
    commit within 0.5s": it was chosen, and is applied whatever the client does."""
    config = one_node_config(tmp_path, groups=(GroupSpec(1, "slow"),))
    with running_node(config, {1: Slow(1)}, request_timeout=0.5) as running:
        deadline = time.monotonic() + 10
        while not running.node.replicas[1].is_leader():
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.01)
        with pytest.raises(NoQuorumError) as timed_out:
            running.call(running.node.submit(1, "anything", "r1"))
        assert str(timed_out.value) == (
            "group 1: the command was chosen (instance 1) but this node has not applied it "
            "within 0.5s (a slow state machine or a long backlog); retry with the same "
            "request_id for its result"
        )
        outcome = running.call(running.node.submit(1, "anything", "r1", timeout=5))
        assert (outcome.instance, outcome.result) == (1, {"slept": True})


def test_waiters_failed_at_a_stop_name_their_request_ids() -> None:
    """A stop (or a storage failure) used to fail every waiting command with "the node is
    shutting down": a definite-sounding 503 without the request id, for commands that may still
    be chosen through another node (after the hand-over, the stopping leader forwards its
    queue to the new one). A client that sent no id could not retry safely."""
    from consensus.runtime.waiters import Waiters

    async def scenario() -> list[BaseException | None]:
        waiters = Waiters()
        futures = [waiters.get(1, "r1"), waiters.get(2, "r2")]
        waiters.fail_all("node 3 stopped")
        return [future.exception() for future in futures]

    first, second = asyncio.run(scenario())
    assert isinstance(first, SubmitError) and first.request_id == "r1"
    assert second is not None and second.request_id == "r2"  # type: ignore[attr-defined]
    assert str(first) == (
        "node 3 stopped before this command's outcome was known (it may still be chosen): "
        "retry with the same request_id on another node"
    )


def test_a_cancelled_stop_still_stops_and_a_second_waits_for_it(loop_node: LoopNode) -> None:
    """A stop cancelled while it handed over left the node halfway (refusing requests, its
    replicas promising nothing, its loop and links running), and a second stop returned at
    once, as if the node had stopped."""
    node = loop_node.node

    async def scenario() -> tuple[bool, bool]:
        first = asyncio.ensure_future(node.stop())
        await asyncio.sleep(0)
        first.cancel()
        await node.stop()
        return (
            first.cancelled(),
            node.stopping and node._stop_task is not None and node._stop_task.done(),
        )

    cancelled, stopped = loop_node.call(scenario())
    assert cancelled and stopped


def test_a_waiter_gets_409_when_its_request_id_carried_another_command() -> None:
    """The outcome names the command applied: a caller that sent another one under the same id
    gets ``RequestIdReusedError``, not that command's result; the same JSON written otherwise is
    the same command; a second caller with another command while one waits is refused at once."""
    from consensus.runtime.waiters import Waiters

    async def scenario() -> None:
        waiters = Waiters()
        other = waiters.get(1, "r1", '{"value": "y"}')
        waiters.resolve(Outcome(1, "r1", 5, {"ok": 1}, payload='{"value": "x"}'))
        with pytest.raises(RequestIdReusedError, match=r"'r1' was already used .*instance 5"):
            other.result()
        same = waiters.get(1, "r2", '{"value":"x"}')
        waiters.resolve(Outcome(1, "r2", 6, {"ok": 1}, payload='{"value": "x"}'))
        assert same.result().instance == 6
        waiting = waiters.get(1, "r3", "a")
        with pytest.raises(RequestIdReusedError):
            waiters.get(1, "r3", "b")
        assert waiters.get(1, "r3", "a") is waiting
        unknown = waiters.get(1, "r4")  # a caller that did not say: any outcome is its own
        waiters.resolve(Outcome(1, "r4", 7, None, payload="c"))
        assert unknown.result().instance == 7

    asyncio.run(scenario())


def test_a_caller_that_stops_waiting_leaves_the_outcome_to_the_others(
    loop_node: LoopNode,
) -> None:
    """A retry that joined a command still waiting (the same request id, on the same node)
    shares its future. The first caller's timeout, or its client going away, used to drop that
    future: the retry then waited its whole timeout for an outcome nobody handed it."""
    node = loop_node.node
    command = json.dumps({"op": "put", "key": "k", "value": "v"})

    async def scenario() -> Any:
        node.replicas[1].submit = lambda _command: None  # never proposed, until said
        first = asyncio.ensure_future(node.submit(1, command, "r1", timeout=0.05))
        gone = asyncio.ensure_future(node.submit(1, command, "r1"))
        retry = asyncio.ensure_future(node.submit(1, command, "r1", timeout=3))
        await asyncio.sleep(0.01)
        gone.cancel()
        with pytest.raises(SubmitError):
            await first  # its timeout
        del node.replicas[1].submit
        node.replicas[1].submit(Command("r1", command))
        node._wake.set()
        return await retry

    outcome = loop_node.call(scenario())
    assert outcome.result == {"key": "k", "value": "v"}
    assert not len(node._waiters) and not node._waiters.waiting(1)


def test_a_caller_whose_client_went_away_leaves_no_waiter_behind(loop_node: LoopNode) -> None:
    """A REST client that disconnects cancels its request: its waiter used to stay for a
    command that may never be chosen (and kept its group's applications from being deferred)."""
    node = loop_node.node
    command = json.dumps({"op": "put", "key": "k", "value": "v"})

    async def scenario() -> None:
        node.replicas[1].submit = lambda _command: None  # never proposed
        gone = asyncio.ensure_future(node.submit(1, command, "r1"))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.wait([gone])  # its cancellation handled, to the end
        del node.replicas[1].submit

    loop_node.call(scenario())
    assert not len(node._waiters) and not node._waiters.waiting(1)


def test_a_late_give_up_does_not_drop_a_newer_waiter_for_the_same_id() -> None:
    from consensus.runtime.waiters import Waiters

    async def scenario() -> None:
        waiters = Waiters()
        first = waiters.get(1, "r1")
        waiters.resolve(Outcome(1, "r1", 5, "ok"))  # answered; its caller has not resumed yet
        second = waiters.get(1, "r1")  # a retry waits for the same id again
        waiters.discard(1, "r1", first)  # the first caller's timeout, a moment too late
        assert waiters.future_of(1, "r1") is second and waiters._waiters[(1, "r1")].callers == 1

    asyncio.run(scenario())
