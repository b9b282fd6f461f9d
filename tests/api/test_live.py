"""The API on a live 3-node cluster (real ``runpaxos`` processes): the seed's scenario over REST,
the Python client and the CLI; read consistency; every endpoint's errors, after each of which the
node must still serve."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from consensus.client import (
    AuthError,
    BadRequest,
    MyPaxosClient,
    NotFound,
    PaxosClient,
    RequestIdConflict,
)
from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def raw_request(
    cluster: Cluster, node_id: int, method: str, path: str, data: bytes, token: str | None = TOKEN
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        cluster.nodes[node_id].url + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def assert_healthy(cluster: Cluster) -> None:
    """Every node still answers, and a write still goes through."""
    for node_id in cluster.nodes:
        with urllib.request.urlopen(cluster.nodes[node_id].url + "/healthz", timeout=10) as r:
            assert r.status == 200
    code, body = cluster.request(1, "PUT", f"/api/kv/1/{unique('health')}", {"value": "ok"})
    assert code == 200, body


def client_for(cluster: Cluster, first: int = 1, **options: Any) -> PaxosClient:
    others = [("127.0.0.1", n.port) for i, n in cluster.nodes.items() if i != first]
    return PaxosClient("127.0.0.1", cluster.nodes[first].port, TOKEN, nodes=others, **options)


#
# The seed's scenario
#


def test_seed_scenario_over_rest_from_every_node(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    key = unique("name")
    assert cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": "Mike"})[0] == 200
    assert cluster.request(2, "PUT", f"/api/kv/2/{key}", {"value": "Neo"})[0] == 200
    for node_id in cluster.nodes:
        code, body = cluster.request(node_id, "GET", f"/api/kv/1/{key}")
        assert (code, body["value"], body["consistency"]) == (200, "Mike", "linearizable")
        assert cluster.request(node_id, "GET", f"/api/kv/2/{key}")[1]["value"] == "Neo"


def test_seed_scenario_through_the_client_with_the_seed_message_format(
    shared_cluster: Cluster,
) -> None:
    key = unique("name")
    port = shared_cluster.nodes[1].port
    client = MyPaxosClient("127.0.0.1", port, token=TOKEN)
    client.submit(json.dumps({"type": "put", "key": key, "value": "Mike"}), 1)
    client.submit(json.dumps({"type": "put", "key": key, "value": "Neo"}), 2)
    get = json.dumps({"type": "get", "key": key, "value": ""})
    for node in shared_cluster.nodes.values():
        with MyPaxosClient("127.0.0.1", node.port, token=TOKEN) as other:
            assert other.submit(get, 1) == {"key": key, "value": "Mike", "found": True}
            assert other.get(key, 1) == "Mike"
            assert other.get(key, 2) == "Neo"
    client.close()


def test_client_kv_helpers(shared_cluster: Cluster) -> None:
    key = unique("k")
    with client_for(shared_cluster, 2) as client:
        assert client.get(key) is None
        assert client.get(key, default="?") == "?"
        instance = client.put(key, "v1")
        assert instance >= 1
        assert client.get(key, consistency="local") in (None, "v1")
        assert client.get(key) == "v1"
        refused = client.cas(key, "nope", "v2")
        assert (refused.succeeded, refused.value) == (False, "v1")
        result = client.cas(key, "v1", "v2")
        assert result.succeeded and result.value == "v2"
        assert client.cas(unique("absent"), None, "new").succeeded
        assert client.delete(key) is True
        assert client.delete(key) is False
        command = json.dumps({"op": "get", "key": key})
        outcome = client.submit_command(command, 1, request_id="rid-" + key)
        assert outcome.request_id == "rid-" + key and outcome.result["found"] is False
        again = client.submit_command(command, 1, request_id="rid-" + key)
        assert again.duplicate and again.instance == outcome.instance
        with pytest.raises(RequestIdConflict, match="already used for a different command"):
            client.submit_command("anything", 1, request_id="rid-" + key)
        assert {g["group_id"] for g in client.groups()} == {1, 2}
        assert len(client.nodes_info()) == 3
        assert client.log(1, limit=1)["limit"] == 1
        assert client.status()["node_id"] in shared_cluster.nodes


def test_client_errors(shared_cluster: Cluster) -> None:
    port = shared_cluster.nodes[1].port
    with pytest.raises(AuthError, match="wrong API token"):
        PaxosClient("127.0.0.1", port, token="wrong").put("k", "v")
    with PaxosClient("127.0.0.1", port, token=TOKEN) as client:
        with pytest.raises(NotFound, match="unknown group 99"):
            client.submit("x", 99)
        with pytest.raises(NotFound, match="unknown group 99"):
            client.get("k", 99)
        with pytest.raises(BadRequest, match="value must be a string"):
            client.put("k", 5)  # type: ignore[arg-type]
        with pytest.raises(BadRequest, match="cannot contain '/'"):
            client.get("a/b")


def test_client_fails_over_from_a_dead_address(shared_cluster: Cluster) -> None:
    from consensus.config import free_ports

    (dead_port,) = free_ports(1)
    live = [("127.0.0.1", n.port) for n in shared_cluster.nodes.values()]
    with PaxosClient("127.0.0.1", dead_port, TOKEN, nodes=live, retry_timeout=10) as client:
        key = unique("failover")
        client.put(key, "v")
        assert client.get(key) == "v"


def test_a_client_given_one_node_learns_every_node(shared_cluster: Cluster) -> None:
    port = next(iter(shared_cluster.nodes.values())).port
    with PaxosClient("127.0.0.1", port, TOKEN) as client:
        client.put(unique("discover"), "v")
        assert sorted(client.nodes) == sorted(
            ("127.0.0.1", node.port) for node in shared_cluster.nodes.values()
        )


#
# Reads
#


def test_linearizable_read_after_a_write_on_another_node_sees_it(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    key = unique("lin")
    for round_number in range(20):
        writer = 1 + round_number % 3
        reader = 1 + (round_number + 1) % 3
        value = f"v{round_number}"
        assert cluster.request(writer, "PUT", f"/api/kv/1/{key}", {"value": value})[0] == 200
        code, body = cluster.request(reader, "GET", f"/api/kv/1/{key}")
        assert code == 200 and body["value"] == value, (writer, reader, body)
        assert body["consistency"] == "linearizable"


def test_local_read_says_so(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    key = unique("local")
    instance = cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": "x"})[1]["instance"]
    cluster.wait_for_applied(1, instance)
    for node_id in cluster.nodes:
        code, body = cluster.request(node_id, "GET", f"/api/kv/1/{key}?consistency=local")
        assert code == 200 and body == {
            "key": key,
            "value": "x",
            "instance": instance,
            "consistency": "local",
        }


#
# Endpoints and errors on a live node
#


def test_info_endpoints(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    code, status = cluster.request(2, "GET", "/api/status/")
    assert code == 200 and status["node_id"] == 2
    code, groups = cluster.request(2, "GET", "/api/groups/")
    assert code == 200 and [g["group_id"] for g in groups] == [1, 2]
    assert all(g["leader"] in cluster.nodes for g in groups)
    code, nodes = cluster.request(3, "GET", "/api/nodes/")
    assert code == 200 and [n["me"] for n in nodes] == [False, False, True]
    assert [n["connected"] for n in nodes] == [True, True, None]
    key = unique("log")
    put = cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": "v"})[1]
    cluster.wait_for_applied(1, put["instance"])
    after = put["instance"] - 1
    code, page = cluster.request(1, "GET", f"/api/groups/1/log/?after={after}&limit=1")
    assert code == 200
    (entry,) = page["results"]
    assert entry["instance"] == put["instance"]
    assert [json.loads(c["command"]) for c in entry["commands"]] == [
        {"op": "put", "key": key, "value": "v"}
    ]
    assert_healthy(cluster)


BAD_REQUESTS = [
    ("POST", "/api/groups/1/commands/", b"{not json", 400),
    ("POST", "/api/groups/1/commands/", b"{}", 400),
    ("POST", "/api/groups/1/commands/", b'{"command": 1}', 400),
    ("POST", "/api/groups/77/commands/", b'{"command": "x"}', 404),
    ("PUT", "/api/kv/1/k", b'{"value": false}', 400),
    ("PUT", "/api/kv/77/k", b'{"value": "v"}', 404),
    ("POST", "/api/kv/1/k/cas", b'{"value": "v"}', 400),
    ("GET", "/api/kv/1/k?consistency=x", b"", 400),
    ("GET", "/api/groups/1/log/?limit=0", b"", 400),
    ("GET", "/api/groups/77/log/", b"", 404),
    ("DELETE", "/api/groups/1/commands/", b"", 405),
    ("GET", "/api/nothing", b"", 404),
]


@pytest.mark.parametrize(("method", "path", "data", "status"), BAD_REQUESTS)
def test_bad_requests_get_json_errors_and_the_node_stays_healthy(
    shared_cluster: Cluster, method: str, path: str, data: bytes, status: int
) -> None:
    code, body = raw_request(shared_cluster, 2, method, path, data or None)  # type: ignore[arg-type]
    assert code == status and isinstance(body["error"], str), body
    assert_healthy(shared_cluster)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_missing_or_wrong_token_on_a_live_node(shared_cluster: Cluster, token: str | None) -> None:
    for method, path, body in [
        ("PUT", "/api/kv/1/k", {"value": "v"}),
        ("POST", "/api/groups/1/commands/", {"command": "x"}),
        ("GET", "/api/status/", None),
    ]:
        code, answer = shared_cluster.request(1, method, path, body, token=token)
        assert code == 401 and answer["error"]
    assert_healthy(shared_cluster)


def test_oversized_body_is_413_on_a_live_node(shared_cluster: Cluster) -> None:
    big = json.dumps({"value": "x" * (1024 * 1024 + 10)}).encode()
    code, body = raw_request(shared_cluster, 1, "PUT", "/api/kv/1/big", big)
    assert code == 413 and str(1024 * 1024) in body["error"]  # names the limit
    value = json.dumps({"value": "x" * (256 * 1024 + 1)}).encode()
    assert raw_request(shared_cluster, 1, "PUT", "/api/kv/1/big", value)[0] == 413
    assert raw_request(shared_cluster, 1, "GET", "/api/kv/1/" + "k" * 1025, None)[0] == 413
    assert_healthy(shared_cluster)


def test_a_client_that_sends_a_large_body_anyway_reads_its_413(shared_cluster: Cluster) -> None:
    """A body far past the limit, more than the sockets' buffers hold: the node answers 413
    before reading it, and goes on reading (and dropping) the rest for a while, so the client
    can finish sending and read the answer. Closed at once, the client met a broken pipe or a
    reset that took the 413 with it."""
    big = json.dumps({"value": "x" * (32 * 1024 * 1024)}).encode()
    for _ in range(3):
        code, body = raw_request(shared_cluster, 1, "PUT", "/api/kv/1/big", big)
        assert code == 413 and str(1024 * 1024) in body["error"]
    assert_healthy(shared_cluster)


def test_a_declared_oversized_body_is_refused_before_it_is_sent(shared_cluster: Cluster) -> None:
    """``Expect: 100-continue`` with a Content-Length above the limit: the node answers 413 at
    once instead of inviting the client to send its 3 MB (first line, not ``100 Continue``)."""
    with socket.create_connection(("127.0.0.1", shared_cluster.nodes[1].port), timeout=10) as conn:
        conn.sendall(
            b"PUT /api/kv/1/big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            + b"Content-Length: 3000000\r\n\r\n"
        )
        first_line = conn.makefile("rb").readline()
    assert first_line.startswith(b"HTTP/1.1 413 "), first_line
    assert_healthy(shared_cluster)


def test_schema_and_docs_are_open(shared_cluster: Cluster) -> None:
    url = shared_cluster.nodes[1].url
    with urllib.request.urlopen(url + "/api/schema/?format=json", timeout=10) as response:
        schema = json.loads(response.read())
    assert "/api/kv/{group_id}/{key}" in schema["paths"]
    with urllib.request.urlopen(url + "/api/docs/", timeout=10) as response:
        assert b"swagger-ui" in response.read()


#
# The CLI
#


def run_cli(cluster: Cluster, *args: str, token: str = TOKEN) -> str:
    import io

    out = io.StringIO()
    urls = ",".join(node.url for node in cluster.nodes.values())
    call_command("paxos", "--url", urls, "--token", token, *args, stdout=out)
    return out.getvalue().strip()


def test_cli(shared_cluster: Cluster) -> None:
    key = unique("cli")
    assert json.loads(run_cli(shared_cluster, "put", key, "Mike"))["key"] == key
    assert run_cli(shared_cluster, "get", key) == "Mike"
    assert run_cli(shared_cluster, "get", "--local", key) in ("Mike", "")
    assert json.loads(run_cli(shared_cluster, "cas", key, "Bob", "--expected", "Mike"))["succeeded"]
    seed = json.dumps({"type": "get", "key": key, "value": ""})
    assert json.loads(run_cli(shared_cluster, "submit", seed))["value"] == "Bob"
    query = json.dumps({"op": "get", "key": key})
    assert json.loads(run_cli(shared_cluster, "query", query))["value"] == "Bob"
    port = next(iter(shared_cluster.nodes.values())).port
    with PaxosClient("127.0.0.1", port, TOKEN) as client:
        assert client.query({"op": "get", "key": key})["value"] == "Bob"
        assert client.query({"op": "get", "key": key}, consistency="local")["found"] is True
    assert json.loads(run_cli(shared_cluster, "delete", key))["deleted"] is True
    status = run_cli(shared_cluster, "status")
    assert "leader" in status and len(status.splitlines()) == 1 + 3 * 2
    with pytest.raises(CommandError, match="not found"):
        run_cli(shared_cluster, "get", key)
    with pytest.raises(CommandError, match="cas failed"):
        run_cli(shared_cluster, "cas", key, "x", "--expected", "nope")
    with pytest.raises(CommandError, match="wrong API token"):
        run_cli(shared_cluster, "get", key, token="wrong")
    with pytest.raises(CommandError, match="unknown group 5"):
        run_cli(shared_cluster, "put", "--group", "5", key, "v")


def test_cli_finds_the_demo_cluster_in_the_current_folder(
    shared_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README's shell lines do after ``make demo``: no --config, no --url."""
    import io

    (tmp_path / "demo-cluster").mkdir()
    (tmp_path / "demo-cluster" / "cluster.json").write_text(shared_cluster.config_path.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAXOS_API_TOKEN", raising=False)
    out = io.StringIO()
    call_command("paxos", "put", unique("demo"), "v", stdout=out)
    assert json.loads(out.getvalue())["instance"] >= 1


def test_cli_with_the_cluster_config(shared_cluster: Cluster) -> None:
    import io

    out = io.StringIO()
    call_command(
        "paxos", "--config", str(shared_cluster.config_path), "put", unique("cfg"), "v", stdout=out
    )
    assert json.loads(out.getvalue())["instance"] >= 1
    with pytest.raises(CommandError, match="config file not found"):
        call_command("paxos", "--config", "/no/such/file.json", "status")
