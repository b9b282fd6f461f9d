"""The client stream's answers in three corners (``consensus/api/stream.py``):

- a command sent again on the same connection while the first is still waiting (a client that
  gave up on this node, found no other, and came back) joins it and gets its own answer: it used
  to get a 400 "already in flight here", which the client reported as a refused write, and the
  write was applied a moment later;
- a query whose state machine raises anything but ``QueryError`` gets the REST API's 500, and
  every other query of its batch gets an answer: none of them used to get any;
- a submit that names the state machine it is meant for (the client's KV helpers say
  ``"machine": "kv"``) is refused with the REST routes' 404 by a group that runs another one,
  before anything is proposed: a KV put to a log group used to be committed there.

In-process against the fake node of ``conftest.py``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from consensus.registry import registry
from consensus.runtime import Outcome
from consensus.statemachine import StateMachine
from kvstore.statemachines import KVStateMachine
from tests.api.conftest import FakeNode, open_stream
from tests.api.test_stream_kv_limits import exchange

pytestmark = pytest.mark.django_db(transaction=True)

PUT = json.dumps({"op": "put", "key": "k", "value": "v"})
OTHER_PUT = json.dumps({"op": "put", "key": "k", "value": "w"})


def submit(client_id: Any, command: str = PUT, group: int = 1, **fields: Any) -> dict[str, Any]:
    return {"id": client_id, "op": "submit", "group": group, "command": command, **fields}


@pytest.fixture
def held_commands(stream_node: FakeNode) -> dict[str, asyncio.Future[Outcome]]:
    """Commands wait until the test resolves their futures (by request id)."""
    held: dict[str, asyncio.Future[Outcome]] = {}

    def submit_nowait(group_id: int, payload: str, request_id: str) -> asyncio.Future[Outcome]:
        future = held[request_id] = asyncio.get_running_loop().create_future()
        return future

    stream_node.submit_nowait = submit_nowait  # type: ignore[attr-defined]
    return held


def test_a_command_sent_again_while_it_waits_gets_an_answer_for_each_request(
    held_commands: dict[str, asyncio.Future[Outcome]],
) -> None:
    async def scenario() -> tuple[dict[Any, Any], dict[Any, Any]]:
        async with open_stream() as stream:
            await stream.send([submit(1, request_id="r1")])
            await asyncio.sleep(0.05)
            await stream.send([submit(2, request_id="r1", retry=True)])
            await stream.send([submit(3, request_id="r1")])
            await stream.send([submit(4, command=OTHER_PUT, request_id="r1")])
            refused = await stream.answers(1)
            held_commands["r1"].set_result(Outcome(1, "r1", 7, {"key": "k", "value": "v"}))
            return refused, await stream.answers(3)

    refused, answered = async_to_sync(scenario)()
    assert refused[4]["status"] == 409, refused  # another command under the id waiting
    assert "was already used for a different command" in refused[4]["error"]
    assert set(answered) == {1, 2, 3}, answered
    for answer in answered.values():
        assert answer["ok"] is True and answer["instance"] == 7, answer
    assert list(held_commands) == ["r1"], "the resends must not be proposed again"


class FailingQuery(StateMachine):
    """Answers queries by echoing them; "boom" is a bug in its ``query``."""

    durable = False

    def apply(self, command: str, context: Any) -> Any:
        return None

    def query(self, queries: list[str]) -> list[Any]:
        if "boom" in queries:
            raise ValueError("a bug in query()")
        return [{"echo": query} for query in queries]


def test_a_query_that_raises_gets_a_500_and_the_rest_of_its_batch_is_answered(
    stream_node: FakeNode,
) -> None:
    if not registry.is_registered("test-failing-query"):
        registry.register("test-failing-query", FailingQuery)
    stream_node.machines[2] = registry.create("test-failing-query", 2)

    def query(client_id: int, text: str) -> dict[str, Any]:
        return {"id": client_id, "op": "query", "group": 2, "query": text, "consistency": "local"}

    answers = exchange([query(1, "fine"), query(2, "boom")])
    assert answers[2]["status"] == 500, answers
    assert answers[2]["error"] == "internal error (see the node's log)"
    assert answers[1]["status"] == 500  # the same batch: one query() call raised for both
    assert exchange([query(3, "fine")])[3] == {"id": 3, "ok": True, "result": {"echo": "fine"}}


def test_a_kv_command_to_a_group_of_another_machine_is_refused_before_it_is_proposed(
    stream_node: FakeNode,
) -> None:
    answers = exchange(
        [
            submit(1, group=3, machine="kv"),  # group 3 runs the log
            submit(2, group=1, machine="log"),
            submit(3, group=1, machine=7),
            submit(4, group=1, machine="kv"),
        ]
    )
    assert answers[1]["status"] == 404, answers
    assert answers[1]["error"] == 'group 3 does not run the KV store ("kv"); it runs "log"'
    assert answers[2]["status"] == 404
    assert answers[2]["error"] == 'group 1 does not run "log"; it runs "kv"'
    assert answers[3]["status"] == 400
    assert answers[4]["ok"] is True
    assert [group for group, _rid, _payload in stream_node.submitted] == [1]


class RenamedKV(KVStateMachine):
    """The KV store under another name: the REST KV routes take it, so does "machine": "kv"."""


def test_a_machine_is_named_as_registered_and_a_subclass_is_one(stream_node: FakeNode) -> None:
    if not registry.is_registered("test-renamed-kv"):
        registry.register("test-renamed-kv", RenamedKV)
    stream_node.machines[2] = registry.create("test-renamed-kv", 2)
    answers = exchange([submit(1, group=2, machine="kv"), submit(2, group=1, machine="nope")])
    assert answers[1]["ok"] is True, answers
    assert answers[2]["status"] == 400
    assert "no state machine named 'nope'" in answers[2]["error"]


def test_the_hello_lists_what_a_submit_may_hold(stream_node: FakeNode) -> None:
    """A client sends "machine" only to a node that lists it: an older one refuses a field it
    does not know with 400."""

    async def scenario() -> dict[str, Any]:
        async with open_stream() as stream:
            return stream.hello

    assert "machine" in async_to_sync(scenario)()["submit_fields"]
