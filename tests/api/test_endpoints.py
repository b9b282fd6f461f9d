"""Every endpoint, status code and validation error, in process (Django's test client and a fake
node that applies commands to the real KV state machine). Live-cluster versions are in
``test_live.py``."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from consensus.runtime import OverloadedError
from kvstore.models import Entry

from .conftest import TOKEN, ApiClient, FakeNode

pytestmark = pytest.mark.django_db

KV = "/api/kv/1/name"
COMMANDS = "/api/groups/1/commands/"


def error_of(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) >= {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


#
# Commands
#


def test_command_is_applied_and_returns_the_result(api: ApiClient, fake_node: FakeNode) -> None:
    command = json.dumps({"op": "put", "key": "name", "value": "Mike"})
    response = api.call("POST", COMMANDS, {"command": command, "request_id": "r-1"})
    assert response.status_code == 200
    assert response.json() == {
        "instance": 1,
        "request_id": "r-1",
        "result": {"key": "name", "value": "Mike"},
        "duplicate": False,
    }
    assert Entry.objects.get(group_id=1, key="name").value == "Mike"


@pytest.mark.parametrize("consistency", [None, "linearizable", "local"])
def test_a_query_reads_the_state_machine_without_the_log(
    api: ApiClient, fake_node: FakeNode, consistency: str | None
) -> None:
    """A custom machine's ``query()`` was reachable only over the client stream."""
    put = json.dumps({"op": "put", "key": "name", "value": "Mike"})
    assert api.call("POST", COMMANDS, {"command": put}).status_code == 200
    submitted = len(fake_node.submitted)
    body = {"query": json.dumps({"op": "get", "key": "name"})}
    if consistency is not None:
        body["consistency"] = consistency
    answer = api.call("POST", "/api/groups/1/query/", body)
    assert answer.status_code == 200, answer.content
    assert answer.json()["result"]["value"] == "Mike"
    assert answer.json()["consistency"] == (consistency or "linearizable")
    assert len(fake_node.submitted) == submitted  # nothing went into the log


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "not json"}, 400, "not JSON"),
        ({"query": "{}", "consistency": "eventual"}, 400, "consistency must be"),
        ({"query": "{}", "extra": 1}, 400, "extra"),
        ({}, 400, "query"),
    ],
)
def test_a_bad_query_is_a_400(api: ApiClient, body: dict, status: int, message: str) -> None:
    answer = api.call("POST", "/api/groups/1/query/", body)
    assert answer.status_code == status and message in error_of(answer), answer.content


def test_seed_message_format_is_accepted(api: ApiClient) -> None:
    put = json.dumps({"type": "put", "key": "name", "value": "Mike"})
    get = json.dumps({"type": "get", "key": "name", "value": ""})
    assert api.call("POST", COMMANDS, {"command": put}).status_code == 200
    answer = api.call("POST", COMMANDS, {"command": get}).json()
    assert answer["result"] == {"key": "name", "value": "Mike", "found": True}


def test_retry_with_the_same_request_id_returns_the_first_result(
    api: ApiClient, fake_node: FakeNode
) -> None:
    first = api.call("POST", COMMANDS, {"command": "{}", "request_id": "same"}).json()
    again = api.call("POST", COMMANDS, {"command": "{}", "request_id": "same"}).json()
    assert again["instance"] == first["instance"] and again["duplicate"] is True
    assert len(fake_node.submitted) == 1


def test_request_id_header_is_used(api: ApiClient, fake_node: FakeNode) -> None:
    response = api.call("POST", COMMANDS, {"command": "x"}, headers={"X-Request-Id": "hdr-1"})
    assert response.json()["request_id"] == "hdr-1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "JSON object"),
        ("{not json", "not valid JSON"),
        ('["command"]', "JSON object"),
        ("{}", "missing field 'command'"),
        ('{"command": 5}', "command must be a string"),
        ('{"command": null}', "command must be a string"),
        ('{"command": "x", "request_id": 7}', "request_id must be a string"),
        ('{"command": "x", "request_id": ""}', "request_id must be"),
        ('{"command": "x", "request_id": "paxos:barrier:1"}', "reserved"),
        ('{"command": "x", "extra": 1}', "unknown field 'extra'"),
        ('{"command": "\\u0000"}', "NUL"),
    ],
)
def test_command_validation_errors(api: ApiClient, raw: str, message: str) -> None:
    response = api.call("POST", COMMANDS, raw=raw)
    assert response.status_code == 400
    assert message in error_of(response)


def test_command_request_id_too_long(api: ApiClient) -> None:
    response = api.call("POST", COMMANDS, {"command": "x", "request_id": "r" * 256})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/groups/9/commands/", {"command": "x"}),
        ("GET", "/api/groups/9/", None),  # DRF said "No Group matches the given query."
        ("GET", "/api/groups/9/log/", None),
        ("PUT", "/api/kv/9/k", {"value": "v"}),
    ],
)
def test_unknown_group_is_404_saying_so_the_same_way_everywhere(
    api: ApiClient, method: str, path: str, body: dict | None
) -> None:
    response = api.call(method, path, body)
    assert response.status_code == 404
    assert "unknown group 9 (this node's config lists groups 1" in error_of(response)


def test_no_quorum_is_503_with_retry_after(api: ApiClient, no_quorum: FakeNode) -> None:
    response = api.call("POST", COMMANDS, {"command": "x"})
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "no leader" in error_of(response)


def test_a_503_after_a_timeout_names_the_request_id_to_retry_with(
    api: ApiClient, no_quorum: FakeNode
) -> None:
    """The command may still be chosen: the only safe retry is one with the same id, so the
    client needs it even when the node made it up."""
    no_quorum.fail.request_id = "made-by-the-node"
    response = api.call("PUT", KV, {"value": "v"})
    assert response.status_code == 503
    assert response.json()["request_id"] == "made-by-the-node"


def test_overloaded_is_503(api: ApiClient, fake_node: FakeNode) -> None:
    fake_node.fail = OverloadedError("too many commands pending", retry_after=0.2)
    response = api.call("PUT", KV, {"value": "v"})
    assert response.status_code == 503 and response["Retry-After"] == "1"


def test_without_a_running_node_every_data_endpoint_is_503(client: Client, settings) -> None:
    settings.PAXOS_API_TOKENS = (TOKEN,)
    api = ApiClient(client)
    for method, path, body in [
        ("POST", COMMANDS, {"command": "x"}),
        ("GET", KV, None),
        ("PUT", KV, {"value": "v"}),
        ("GET", "/api/status/", None),
    ]:
        response = api.call(method, path, body)
        assert response.status_code == 503, (method, path)
        assert response["Retry-After"] == "1"
        assert "runs no Paxos node" in error_of(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", COMMANDS),
        ("PUT", COMMANDS),
        ("POST", KV),
        ("PATCH", KV),
        ("GET", KV + "/cas"),
        ("POST", "/api/status/"),
        ("DELETE", "/api/groups/"),
        ("POST", "/api/groups/1/log/"),
        ("PUT", "/api/nodes/"),
    ],
)
def test_wrong_method_is_405(api: ApiClient, method: str, path: str) -> None:
    response = api.call(method, path, {"value": "v"})
    assert response.status_code == 405
    error_of(response)


#
# Auth
#

AUTH_CASES = [
    ("POST", COMMANDS, {"command": "x"}),
    ("GET", KV, None),
    ("PUT", KV, {"value": "v"}),
    ("DELETE", KV, None),
    ("POST", KV + "/cas", {"expected": None, "value": "v"}),
    ("GET", "/api/groups/", None),
    ("GET", "/api/groups/1/", None),
    ("GET", "/api/groups/1/log/", None),
    ("GET", "/api/nodes/", None),
    ("GET", "/api/status/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AUTH_CASES)
@pytest.mark.parametrize("token", [None, "wrong-token", "Basic abc", "ünïcode"])
def test_missing_or_wrong_token_is_401(
    api: ApiClient, fake_node: FakeNode, method: str, path: str, body, token
) -> None:
    headers = {}
    if token == "Basic abc":
        headers["Authorization"] = token
        token = None
    response = api.call(method, path, body, token=token, headers=headers)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    error_of(response)
    assert fake_node.submitted == []


def test_token_from_the_cluster_config_is_accepted(api: ApiClient, settings) -> None:
    from consensus.config import ClusterConfig, NodeAddress

    settings.PAXOS_API_TOKENS = ()
    settings.PAXOS_CLUSTER = ClusterConfig(
        path=settings.BASE_DIR / "x.json",
        nodes=(NodeAddress(1, "127.0.0.1", 1),),
        my_id=1,
        secret="s",
        api_tokens=("config-token",),
    )
    assert api.call("GET", "/api/status/", token="config-token").status_code == 200
    assert api.call("GET", "/api/status/", token=TOKEN).status_code == 401


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("staff", password="pw-staff-123", is_staff=True)


@pytest.mark.parametrize(("method", "path", "body"), AUTH_CASES)
def test_staff_session_is_accepted(fake_node, staff, method, path, body) -> None:
    client = Client()
    client.force_login(staff)
    response = ApiClient(client, token=None).call(method, path, body)
    assert response.status_code in (200, 404), response.content  # 404: the key may be absent


def test_non_staff_session_is_403(fake_node, db) -> None:
    user = get_user_model().objects.create_user("plain", password="pw-plain-123")
    client = Client()
    client.force_login(user)
    api = ApiClient(client, token=None)
    assert api.call("PUT", KV, {"value": "v"}).status_code == 403
    assert api.call("GET", "/api/groups/").status_code == 403


def test_session_writes_need_the_csrf_token(fake_node, staff) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    api = ApiClient(client, token=None)
    refused = api.call("PUT", KV, {"value": "v"})
    assert refused.status_code == 403 and "CSRF" in error_of(refused)
    assert api.call("GET", KV + "?consistency=local").status_code == 404  # reads need no token
    from django.middleware.csrf import _get_new_csrf_string

    csrf = _get_new_csrf_string()
    client.cookies["csrftoken"] = csrf  # what a browser got from an earlier page
    accepted = api.call("PUT", KV, {"value": "v"}, headers={"X-CSRFToken": csrf})
    assert accepted.status_code == 200, accepted.content


def test_token_clients_need_no_csrf(fake_node) -> None:
    api = ApiClient(Client(enforce_csrf_checks=True))
    assert api.call("PUT", KV, {"value": "v"}).status_code == 200


#
# KV
#


def test_kv_put_get_delete(api: ApiClient, fake_node: FakeNode) -> None:
    put = api.call("PUT", KV, {"value": "Mike"})
    assert put.status_code == 200
    assert put.json() | {"request_id": "x"} == {
        "key": "name",
        "value": "Mike",
        "instance": 1,
        "request_id": "x",
        "duplicate": False,
    }
    got = api.call("GET", KV).json()
    assert got == {"key": "name", "value": "Mike", "instance": 1, "consistency": "linearizable"}
    assert fake_node.barriers == 1
    local = api.call("GET", KV + "?consistency=local").json()
    assert local["consistency"] == "local" and local["value"] == "Mike"
    assert fake_node.barriers == 1  # a local read makes no round
    deleted = api.call("DELETE", KV)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    again = api.call("DELETE", KV, headers={"X-Request-Id": "del-2"})
    assert again.json()["deleted"] is False and again.json()["request_id"] == "del-2"
    missing = api.call("GET", KV)
    assert missing.status_code == 404
    assert missing.json()["consistency"] == "linearizable"
    assert "not found" in error_of(missing)


def test_kv_groups_are_independent(api: ApiClient) -> None:
    api.call("PUT", "/api/kv/1/name", {"value": "Mike"})
    api.call("PUT", "/api/kv/2/name", {"value": "Neo"})
    assert api.call("GET", "/api/kv/1/name").json()["value"] == "Mike"
    assert api.call("GET", "/api/kv/2/name").json()["value"] == "Neo"


def test_kv_delete_request_id_in_query(api: ApiClient, fake_node: FakeNode) -> None:
    api.call("PUT", KV, {"value": "v"})
    first = api.call("DELETE", KV + "?request_id=d1").json()
    second = api.call("DELETE", KV + "?request_id=d1").json()
    assert first["deleted"] is True and second["deleted"] is True and second["duplicate"] is True


def test_kv_cas(api: ApiClient) -> None:
    cas = KV + "/cas"
    created = api.call("POST", cas, {"expected": None, "value": "a"}).json()
    assert created["succeeded"] is True and created["value"] == "a"
    refused = api.call("POST", cas, {"expected": None, "value": "b"}).json()
    assert refused["succeeded"] is False and refused["value"] == "a"
    swapped = api.call("POST", cas, {"expected": "a", "value": "c"}).json()
    assert swapped["succeeded"] is True and swapped["value"] == "c"
    wrong = api.call("POST", cas, {"expected": "zzz", "value": "d"}).json()
    assert wrong == wrong | {"succeeded": False, "value": "c"}


def test_kv_unicode_keys_and_values(api: ApiClient) -> None:
    from urllib.parse import quote

    key = "naïve ключ 🗝"
    path = f"/api/kv/1/{quote(key)}"
    assert api.call("PUT", path, {"value": "värde ✓"}).status_code == 200
    assert api.call("GET", path).json()["value"] == "värde ✓"
    assert api.call("GET", path).json()["key"] == key


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "message"),
    [
        ("PUT", KV, "", 400, "JSON object"),
        ("PUT", KV, "nope", 400, "not valid JSON"),
        ("PUT", KV, "[]", 400, "JSON object"),
        ("PUT", KV, "{}", 400, "missing field 'value'"),
        ("PUT", KV, '{"value": 1}', 400, "value must be a string"),
        ("PUT", KV, '{"value": null}', 400, "value must be a string"),
        ("PUT", KV, '{"value": ["a"]}', 400, "value must be a string"),
        ("PUT", KV, '{"value": "a", "vaule": "b"}', 400, "unknown field 'vaule'"),
        ("PUT", KV, '{"value": "a\\u0000"}', 400, "NUL"),
        ("PUT", KV, '{"value": "a", "request_id": false}', 400, "request_id"),
        ("POST", KV + "/cas", '{"value": "a"}', 400, "missing field 'expected'"),
        ("POST", KV + "/cas", '{"expected": 3, "value": "a"}', 400, "expected must be a string"),
        ("POST", KV + "/cas", '{"expected": "a"}', 400, "missing field 'value'"),
        ("POST", KV + "/cas", '{"expected": "a", "value": true}', 400, "value must be a string"),
        ("GET", KV + "?consistency=eventual", None, 400, "consistency must be"),
        ("GET", "/api/kv/9/name", None, 404, "unknown group 9"),
        ("PUT", "/api/kv/9/name", '{"value": "a"}', 404, "unknown group 9"),
        ("GET", "/api/kv/3/name", None, 404, 'does not run the KV store ("kv"); it runs "log"'),
        ("PUT", "/api/kv/3/name", '{"value": "a"}', 404, "does not run the KV store"),
        ("GET", "/api/kv/x/name", None, 404, "no API endpoint"),
        ("GET", "/api/kv/1/a/b", None, 404, "no API endpoint"),
    ],
)
def test_kv_validation_errors(api, method, path, raw, status, message) -> None:
    response = api.call(method, path, raw=raw)
    assert response.status_code == status, response.content
    assert message in error_of(response)


#
# Limits
#


def test_oversized_body_is_413(api: ApiClient, settings, fake_node: FakeNode) -> None:
    settings.PAXOS_MAX_BODY_BYTES = 1000
    response = api.call("POST", COMMANDS, {"command": "x" * 2000})
    assert response.status_code == 413
    assert "too large" in error_of(response)
    assert api.call("PUT", KV, {"value": "x" * 2000}).status_code == 413
    assert fake_node.submitted == []


def test_oversized_key_and_value_are_413(api: ApiClient, settings) -> None:
    settings.PAXOS_MAX_KEY_BYTES = 8
    settings.PAXOS_MAX_VALUE_BYTES = 10
    assert api.call("PUT", "/api/kv/1/12345678", {"value": "0123456789"}).status_code == 200
    too_long_key = api.call("PUT", "/api/kv/1/123456789", {"value": "v"})
    assert too_long_key.status_code == 413 and "key too large" in error_of(too_long_key)
    assert api.call("GET", "/api/kv/1/ééééé").status_code == 413  # 10 bytes of UTF-8
    too_long_value = api.call("PUT", KV, {"value": "0123456789a"})
    assert too_long_value.status_code == 413 and "value too large" in error_of(too_long_value)
    cas = api.call("POST", KV + "/cas", {"expected": "x" * 11, "value": "v"})
    assert cas.status_code == 413


def test_default_limits() -> None:
    from consensus.api import fastpath

    assert fastpath.max_body_bytes() == 1024 * 1024
    assert fastpath.max_key_bytes() == 1024
    assert fastpath.max_value_bytes() == 256 * 1024


#
# Groups, log, nodes, status
#


def test_groups_list_and_detail(api: ApiClient, fake_node: FakeNode) -> None:
    from consensus.models import Group

    Group.objects.create(group_id=1, state_machine="kv", chosen_upto=0)
    Group.objects.create(group_id=2, state_machine="kv", chosen_upto=0)
    api.call("PUT", KV, {"value": "v"})
    groups = api.call("GET", "/api/groups/").json()
    assert [g["group_id"] for g in groups] == [1, 2]
    assert groups[0] == {
        "group_id": 1,
        "state_machine": "kv",
        "role": "leader",
        "leader": 1,
        "ballot": "1.1",
        "chosen_upto": 1,
        "applied": 1,
        "rebuilding": False,
    }
    assert api.call("GET", "/api/groups/2/").json()["group_id"] == 2
    missing = api.call("GET", "/api/groups/7/")
    assert missing.status_code == 404 and error_of(missing)


def test_log_is_paginated_and_decoded(api: ApiClient) -> None:
    from consensus.models import Group, Instance

    group = Group.objects.create(group_id=1, state_machine="kv", chosen_upto=5)
    for instance in range(1, 6):
        value = json.dumps([[f"r{instance}", f"cmd {instance}"], ["paxos:barrier:x", ""]])
        Instance.objects.create(group=group, instance=instance, value=value, chosen=True)
    Instance.objects.create(group=group, instance=6, value="[]", chosen=False)
    page = api.call("GET", "/api/groups/1/log/?limit=2").json()
    assert [e["instance"] for e in page["results"]] == [1, 2]
    assert page["results"][0]["commands"] == [{"request_id": "r1", "command": "cmd 1"}]
    assert page["next"].endswith("/api/groups/1/log/?after=2&limit=2")
    assert page["chosen_upto"] >= 5
    last = api.call("GET", "/api/groups/1/log/?after=4&limit=2").json()
    assert [e["instance"] for e in last["results"]] == [5] and last["next"] is None
    default = api.call("GET", "/api/groups/1/log/").json()
    assert default["limit"] == 100 and len(default["results"]) == 5


def test_a_log_page_ends_at_a_mebibyte_of_values(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 entries of up to 1 MiB each were rendered as one page, while the node's event loop
    waited for the GIL (a review: 10 ms per MB)."""
    from consensus.api import views
    from consensus.models import Group, Instance

    monkeypatch.setattr(views, "MAX_LOG_PAGE_CHARS", 1000)
    group = Group.objects.create(group_id=1, state_machine="kv", chosen_upto=4)
    for instance, size in enumerate((400, 500, 300, 2000), start=1):
        value = json.dumps([[f"r{instance}", "x" * size]])
        Instance.objects.create(group=group, instance=instance, value=value, chosen=True)
    first = api.call("GET", "/api/groups/1/log/").json()
    assert [e["instance"] for e in first["results"]] == [1, 2]
    assert first["next"].endswith("/api/groups/1/log/?after=2&limit=100")
    second = api.call("GET", "/api/groups/1/log/?after=2").json()
    assert [e["instance"] for e in second["results"]] == [3]
    alone = api.call("GET", "/api/groups/1/log/?after=3").json()  # larger than a page: alone
    assert [e["instance"] for e in alone["results"]] == [4] and alone["next"] is None


def test_the_log_is_served_up_to_its_first_gap(api: ApiClient) -> None:
    """An instance chosen above a gap waits for the gap: a client that goes on after the last
    entry it got would skip the gap's instances for good (a review)."""
    from consensus.models import Group, Instance

    group = Group.objects.create(group_id=1, state_machine="kv", chosen_upto=2)
    for instance in (1, 2, 4):
        value = json.dumps([[f"r{instance}", f"cmd {instance}"]])
        Instance.objects.create(group=group, instance=instance, value=value, chosen=True)
    page = api.call("GET", "/api/groups/1/log/?limit=3").json()
    assert [e["instance"] for e in page["results"]] == [1, 2] and page["next"] is None
    Instance.objects.create(group=group, instance=3, value="[]", chosen=True)
    Group.objects.filter(group_id=1).update(chosen_upto=4)
    page = api.call("GET", "/api/groups/1/log/?after=2").json()
    assert [e["instance"] for e in page["results"]] == [3, 4]


@pytest.mark.parametrize(
    "query",
    [
        *("after=-1", "after=x", "limit=0", "limit=1001", "limit=a"),
        # int() takes these: DRF's IntegerField read them as 10, 3, 3, 3 and 3
        *("after=1_0", "after=+3", "after=%2B3", "after=3.0", "after=%D9%A3", "limit=1_0"),
    ],
)
def test_log_query_validation(api: ApiClient, query: str) -> None:
    from consensus.models import Group

    Group.objects.create(group_id=1, state_machine="kv")
    response = api.call("GET", f"/api/groups/1/log/?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] and "fields" in body


def test_log_of_unknown_group_is_404(api: ApiClient) -> None:
    response = api.call("GET", "/api/groups/42/log/")
    assert response.status_code == 404 and "unknown group 42" in error_of(response)


def test_nodes_and_status(api: ApiClient) -> None:
    from consensus.models import Node

    Node.objects.create(node_id=1, host="127.0.0.1", port=33333)
    Node.objects.create(node_id=2, host="::1", port=33334)
    nodes = api.call("GET", "/api/nodes/").json()
    assert nodes[0] == {
        "node_id": 1,
        "host": "127.0.0.1",
        "port": 33333,
        "url": "http://127.0.0.1:33333/",
        "me": True,
        "connected": None,
    }
    assert nodes[1]["url"] == "http://[::1]:33334/"
    assert api.call("GET", "/api/nodes/2/").json()["node_id"] == 2
    status = api.call("GET", "/api/status/").json()
    assert status["node_id"] == 1 and {g["group_id"] for g in status["groups"]} == {1, 2, 3}


def test_unknown_api_paths_are_json_404(api: ApiClient) -> None:
    response = api.call("GET", "/api/nothing/here")
    assert response.status_code == 404 and "no API endpoint" in error_of(response)
    hinted = api.call("GET", "/api/status")
    assert "did you mean /api/status/" in error_of(hinted)


#
# Schema and docs
#


def test_schema_lists_every_endpoint_with_bodies(client: Client) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    expected = {
        "/api/groups/": ["get"],
        "/api/groups/{group_id}/": ["get"],
        "/api/groups/{group_id}/commands/": ["post"],
        "/api/groups/{group_id}/query/": ["post"],
        "/api/groups/{group_id}/log/": ["get"],
        "/api/groups/{group_id}/state-check/": ["post"],
        "/api/nodes/": ["get"],
        "/api/nodes/{node_id}/": ["get"],
        "/api/status/": ["get"],
        "/api/kv/{group_id}/{key}": ["get", "put", "delete"],
        "/api/kv/{group_id}/{key}/cas": ["post"],
    }
    assert set(paths) == set(expected)
    for path, methods in expected.items():
        assert sorted(paths[path]) == sorted(methods), path
        for method in methods:
            operation = paths[path][method]
            assert "200" in operation["responses"], (path, method)
            assert "content" in operation["responses"]["200"], (path, method)
            assert "401" in operation["responses"], (path, method)
            if method in {"post", "put"} and not path.endswith("state-check/"):  # no body
                assert "application/json" in operation["requestBody"]["content"], (path, method)
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_pages_are_served_with_local_assets(client: Client) -> None:
    for page in ("/api/docs/", "/api/redoc/"):
        response = client.get(page)
        assert response.status_code == 200
        html = response.content.decode()
        assert "/static/drf_spectacular_sidecar/" in html
        # no script from elsewhere (a bare "cdn" also matched the page's random CSRF token once)
        assert not re.search(r"""src\s*=\s*["'](https?:)?//""", html), html
        assert not re.search(r"cdn\.|jsdelivr|unpkg|googleapis|gstatic", html.lower()), html
        assert "default-src 'self'" in response["Content-Security-Policy"]
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200


def test_healthz_is_open(client: Client) -> None:
    assert client.get("/healthz").status_code == 200


def test_healthz_fails_once_the_node_stopped_after_a_storage_failure(
    client: Client, fake_node: FakeNode
) -> None:
    """Between the failure and the process's exit (``runpaxos`` exits for its supervisor to
    restart it), a liveness probe must not say ok: it used to, for as long as the process ran."""
    fake_node.failure = RuntimeError("disk I/O error")  # type: ignore[attr-defined]
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "failed" and "disk I/O error" in answer.json()["error"]
