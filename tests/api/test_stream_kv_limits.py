"""The client stream (``/ws/client/``, what ``AsyncPaxosClient`` speaks) refuses the KV commands
and queries the REST routes refuse, with the same statuses and words, as answers to those
requests (the stream stays open); a KV get to a group of another machine is REST's 404. Both
checks are the KV store's ``StateMachine.validate``, the hook any machine can fill.

The stream's ASGI application runs in-process against the fake node of ``conftest.py``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync

from consensus.statemachine import LogOnlyStateMachine
from tests.api.conftest import ApiClient, FakeNode, open_stream

pytestmark = pytest.mark.django_db(transaction=True)

MAX_VALUE = 256 * 1024


def exchange(requests: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Send ``requests`` in one frame on one stream; their answers by id (the stream must not
    close before answering all of them)."""

    async def scenario() -> dict[Any, dict[str, Any]]:
        async with open_stream() as stream:
            # the client splits its frames by it
            assert stream.hello["max_frame_bytes"] >= 1024 * 1024
            await stream.send(requests)
            return await stream.answers(len(requests))

    return async_to_sync(scenario)()


def submit(request_id: str, command: dict[str, Any], group: int = 1) -> dict[str, Any]:
    return {"id": request_id, "op": "submit", "group": group, "command": json.dumps(command)}


def query(request_id: str, key: str, group: int = 1) -> dict[str, Any]:
    text = json.dumps({"op": "get", "key": key})
    return {"id": request_id, "op": "query", "group": group, "query": text}


def refusal(answer: dict[str, Any]) -> tuple[int, str]:
    assert answer["ok"] is False, answer
    return answer["status"], answer["error"]


def rest_refusal(api: ApiClient, method: str, path: str, body: Any = None) -> tuple[int, str]:
    response = api.call(method, path, body)
    return response.status_code, response.json()["error"]


def test_a_key_with_a_slash_is_refused_for_every_kv_operation(stream_node: FakeNode) -> None:
    answers = exchange(
        [
            submit("put", {"op": "put", "key": "a/b", "value": "v"}),
            submit("seed", {"type": "put", "key": "a/b", "value": "v"}),  # the seed's form
            submit("cas", {"op": "cas", "key": "a/b", "expected": None, "value": "v"}),
            submit("delete", {"op": "delete", "key": "a/b"}),
            query("get", "a/b"),
        ]
    )
    for name in ("put", "seed", "cas", "delete", "get"):
        assert refusal(answers[name]) == (400, "keys cannot contain '/': 'a/b'"), name
    assert stream_node.submitted == []  # nothing reached the log


def test_sizes_are_refused_as_rest_refuses_them(
    stream_node: FakeNode, api: ApiClient, settings: Any
) -> None:
    big = "x" * (300 * 1024)
    long_key = "k" * 2000
    answers = exchange(
        [
            submit("put", {"op": "put", "key": "a", "value": big}),
            submit("cas-value", {"op": "cas", "key": "a", "expected": None, "value": big}),
            submit("cas-expected", {"op": "cas", "key": "a", "expected": big, "value": "v"}),
            submit("long-key", {"op": "put", "key": long_key, "value": "v"}),
            query("long-get", long_key),
            submit("empty-key", {"op": "put", "key": "", "value": "v"}),
        ]
    )
    assert refusal(answers["put"]) == (
        413,
        f"value too large: {len(big)} bytes (limit {MAX_VALUE})",
    )
    # the same words as REST's, whichever way the request came
    assert refusal(answers["put"]) == rest_refusal(api, "PUT", "/api/kv/1/a", {"value": big})
    assert refusal(answers["cas-value"]) == rest_refusal(
        api, "POST", "/api/kv/1/a/cas", {"expected": None, "value": big}
    )
    assert refusal(answers["cas-expected"]) == rest_refusal(
        api, "POST", "/api/kv/1/a/cas", {"expected": big, "value": "v"}
    )
    rest_long_key = rest_refusal(api, "PUT", f"/api/kv/1/{long_key}", {"value": "v"})
    assert rest_long_key == (413, "key too large: 2000 bytes (limit 1024)")
    assert refusal(answers["long-key"]) == rest_long_key
    assert refusal(answers["long-get"]) == rest_refusal(api, "GET", f"/api/kv/1/{long_key}")
    assert refusal(answers["empty-key"]) == (400, "the key must not be empty")
    assert stream_node.submitted == []
    # the limits are the settings REST reads, not constants of the stream
    settings.PAXOS_MAX_VALUE_BYTES = 4
    answers = exchange([submit("small", {"op": "put", "key": "a", "value": "12345"})])
    assert refusal(answers["small"]) == (413, "value too large: 5 bytes (limit 4)")


def test_the_stream_stays_open_and_takes_good_requests_after_refusals(
    stream_node: FakeNode,
) -> None:
    answers = exchange(
        [
            submit("bad", {"op": "put", "key": "a/b", "value": "v"}),
            submit("good", {"op": "put", "key": "a", "value": "x" * MAX_VALUE}),
            {"id": "raw", "op": "submit", "group": 1, "command": "not a KV command"},
        ]
    )
    assert answers["bad"]["status"] == 400
    assert answers["good"]["ok"] is True and answers["good"]["result"]["key"] == "a"
    # what is no KV command at all is the state machine's to refuse, as before
    assert answers["raw"]["ok"] is True and "not JSON" in answers["raw"]["result"]["error"]
    assert refusal(exchange([query("a/b", "a/b")])["a/b"])[0] == 400
    assert exchange([query("a", "a")])["a"]["result"]["value"] == "x" * MAX_VALUE


def test_a_kv_get_on_a_group_of_another_machine_gets_rest_s_404(
    stream_node: FakeNode, api: ApiClient
) -> None:
    answers = exchange([query("get", "name", group=3)])
    expected = (404, 'group 3 does not run the KV store ("kv"); it runs "log"')
    assert refusal(answers["get"]) == expected
    assert rest_refusal(api, "GET", f"/api/kv/3/{quote('name')}") == expected
    # any other query keeps the machine's own answer
    other = exchange([{"id": "q", "op": "query", "group": 3, "query": "anything"}])
    assert refusal(other["q"])[0] == 400
    assert "does not answer queries" in refusal(other["q"])[1]


def test_an_answer_no_json_encoder_takes_fails_alone() -> None:
    """A query result orjson refuses used to end the connection's sender: every later answer on
    that stream was lost (the client waited for its timeout, request after request)."""
    from consensus.api.stream import ClientStream

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    stream = ClientStream({"type": "websocket"}, send)
    stream._answer({"id": 1, "ok": True, "result": {1, 2}})  # a set: no encoder takes it
    stream._answer({"id": 2, "ok": True, "result": 2**70})  # json takes what orjson refuses
    stream._answer({"id": 3, "ok": True, "result": "fine"})
    async_to_sync(stream._flush)()
    first, second, third = json.loads(sent[0]["text"])
    assert first["id"] == 1 and first["status"] == 500 and "not" in first["error"]
    assert second == {"id": 2, "ok": True, "result": 2**70}
    assert third == {"id": 3, "ok": True, "result": "fine"}


def test_a_lone_surrogate_in_a_kv_command_is_a_400_not_a_closed_stream(
    stream_node: FakeNode,
) -> None:
    """Escaped inside the command's JSON text, a lone surrogate reached the key check, which
    raised UnicodeEncodeError: the stream died with every request in flight on it."""
    command = '{"op": "put", "key": "\\ud800", "value": "v"}'
    answers = exchange(
        [
            {"id": "bad", "op": "submit", "group": 1, "command": command},
            submit("good", {"op": "put", "key": "a", "value": "v"}),
        ]
    )
    assert refusal(answers["bad"]) == (400, "key is not valid unicode (a lone surrogate)")
    assert answers["good"]["ok"] is True


def test_rest_commands_and_queries_meet_the_same_limits(api: ApiClient) -> None:
    """The generic routes (POST .../commands/ and .../query/) too: a key with '/' written through
    them could be neither read nor deleted through the KV routes."""
    put = json.dumps({"op": "put", "key": "a/b", "value": "v"})
    assert rest_refusal(api, "POST", "/api/groups/1/commands/", {"command": put}) == (
        400,
        "keys cannot contain '/': 'a/b'",
    )
    get = json.dumps({"op": "get", "key": "name"})
    assert rest_refusal(api, "POST", "/api/groups/3/query/", {"query": get}) == (
        404,
        'group 3 does not run the KV store ("kv"); it runs "log"',
    )


class _Picky(LogOnlyStateMachine):
    """A user's machine with limits of its own: names of at most 5 characters."""

    def validate(self, text: str) -> None:
        if text == "crash":
            raise RuntimeError("a bug in validate")
        if len(text) > 5:
            raise ValueError(f"names have at most 5 characters, not {len(text)}")


def test_a_state_machine_s_own_validate_refuses_before_the_log(
    stream_node: FakeNode, api: ApiClient
) -> None:
    """``StateMachine.validate`` is the one hook for a machine's API limits: a 400 with its
    words on REST and the stream alike, nothing proposed; a bug in it is a 500 for that request
    only; what it passes is applied."""
    stream_node.machines[3] = _Picky(3)
    proposed: list[str] = []
    submit_original = stream_node.submit

    async def recording_submit(group_id: int, payload: str, request_id: str) -> Any:
        proposed.append(payload)
        return await submit_original(group_id, payload, request_id)

    stream_node.submit = recording_submit  # type: ignore[method-assign]
    words = (400, "names have at most 5 characters, not 7")
    assert rest_refusal(api, "POST", "/api/groups/3/commands/", {"command": "toolong"}) == words
    assert rest_refusal(api, "POST", "/api/groups/3/query/", {"query": "toolong"}) == words
    answers = exchange(
        [
            {"id": "long", "op": "submit", "group": 3, "command": "toolong"},
            {"id": "bug", "op": "submit", "group": 3, "command": "crash"},
            {"id": "short", "op": "submit", "group": 3, "command": "ok"},
        ]
    )
    assert refusal(answers["long"]) == words
    assert refusal(answers["bug"]) == (
        500,
        "the state machine's validate failed: RuntimeError('a bug in validate')",
    )
    assert answers["short"]["ok"] is True
    assert proposed == ["ok"]


def test_the_dashboard_form_meets_the_same_limits(stream_node: FakeNode, admin_client) -> None:
    """The dashboard's submit form put whatever a staff user typed into the log (a key with '/',
    a command nested too deeply for one node's stack); it goes through ``validate`` too."""
    command = json.dumps({"op": "put", "key": "a/b", "value": "v"})
    answer = admin_client.post("/dashboard/submit/", {"group": 1, "command": command})
    assert (answer.status_code, answer.json()["error"]) == (400, "keys cannot contain '/': 'a/b'")
    stream_node.machines[3] = _Picky(3)
    answer = admin_client.post("/dashboard/submit/", {"group": 3, "command": "toolong"})
    assert answer.status_code == 400 and "at most 5 characters" in answer.json()["error"]
    answer = admin_client.post("/dashboard/submit/", {"group": 3, "command": "ok"})
    assert answer.status_code == 200, answer.content
    assert [payload for _, _, payload in stream_node.submitted] == ["ok"]
