"""Exactly once on a live cluster: one request id is applied once, also when it is retried on
another node after the leader that took it was killed (``kill -9``)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from consensus.client import PaxosClient
from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e


def test_retries_apply_once_across_a_leader_kill(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(groups=(1,))
    leader = cluster.wait_for_leader(1)
    followers = [n for n in cluster.nodes if n != leader]
    key = f"once-{uuid.uuid4().hex[:6]}"
    path = f"/api/kv/1/{key}"

    # 1. An acknowledged write, retried on every node after its leader dies: first result back.
    code, first = cluster.request(leader, "PUT", path, {"value": "a", "request_id": "put-a"})
    assert code == 200
    cluster.kill_node(leader)
    new_leader = cluster.wait_for_leader(1, among=followers)
    for node_id in followers:
        code, again = cluster.request(node_id, "PUT", path, {"value": "a", "request_id": "put-a"})
        # The first application's result, whether this follower had applied it before the retry
        # came ("duplicate") or applied it for the retry (the leader tells a follower that a
        # command is chosen at once only if it forwarded it: these may learn it from the new
        # leader's recovery of the instance).
        assert code == 200
        same = ("key", "value", "instance", "request_id")
        assert {k: again[k] for k in same} == {k: first[k] for k in same}, again

    # 2. A later write to the key; retrying the first request id must not undo it.
    code, second = cluster.request(new_leader, "PUT", path, {"value": "b", "request_id": "put-b"})
    assert code == 200
    code, retried = cluster.request(
        followers[0], "PUT", path, {"value": "a", "request_id": "put-a"}
    )
    assert retried["instance"] == first["instance"]
    assert cluster.request(followers[1], "GET", path)[1]["value"] == "b"

    # 3. The killed node comes back, learns the log and agrees (it applied put-a once, too).
    cluster.start_node(leader)
    cluster.wait_for_applied(1, second["instance"])
    code, body = cluster.request(leader, "GET", path + "?consistency=local")
    assert body["value"] == "b"
    code, again = cluster.request(leader, "PUT", path, {"value": "a", "request_id": "put-a"})
    assert again["instance"] == first["instance"] and again["duplicate"]


def test_client_failover_keeps_the_request_id_while_the_leader_dies(cluster_factory) -> None:
    """Writes in flight when the leader is killed: the client fails over with the same request
    id; every acknowledged sequence number is applied exactly once (a CAS chain breaks otherwise:
    applying "n -> n+1" twice would fail the second time and be reported)."""
    cluster: Cluster = cluster_factory(groups=(1,))
    leader = cluster.wait_for_leader(1)
    ports = {n: node.port for n, node in cluster.nodes.items()}
    order = [leader] + [n for n in cluster.nodes if n != leader]
    key = f"chain-{uuid.uuid4().hex[:6]}"
    results: list[tuple[int, bool, str | None]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            with PaxosClient(
                "127.0.0.1",
                ports[order[0]],
                TOKEN,
                nodes=[("127.0.0.1", ports[n]) for n in order[1:]],
                timeout=3,
                retry_timeout=30,
            ) as client:
                expected = None
                step = 0
                while not stop.is_set() and step < 5000:
                    value = str(step)
                    result = client.cas(key, expected, value, request_id=f"{key}-{step}")
                    results.append((step, result.succeeded, result.value))
                    expected = value
                    step += 1
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 30
    while len(results) < 20 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    cluster.kill_node(leader)  # with a write in flight, most likely
    at_kill = len(results)
    while len(results) < at_kill + 20 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors
    assert len(results) >= at_kill + 20, "no progress after the leader was killed"
    assert all(succeeded for _step, succeeded, _value in results), results
    survivor = order[1]
    last = str(results[-1][0])
    assert cluster.request(survivor, "GET", f"/api/kv/1/{key}")[1]["value"] == last


def test_a_write_that_timed_out_is_retried_with_the_request_id_its_503_names(
    cluster_factory,
) -> None:
    """A 503 after the request timeout means "outcome unknown": the command may still be
    chosen. The answer names its request id (made by the node: the client sent none), and a
    retry with it is applied once, whatever happened to the first attempt."""
    cluster: Cluster = cluster_factory(groups=(1,), request_timeout=1.0)
    leader = cluster.wait_for_leader(1)
    followers = [n for n in cluster.nodes if n != leader]
    path = f"/api/kv/1/timeout-{uuid.uuid4().hex[:6]}"
    for node_id in followers:
        cluster.pause_node(node_id)  # SIGSTOP: no majority, and no error either
    try:
        code, refused = cluster.request(leader, "PUT", path, {"value": "v"})
    finally:
        for node_id in followers:
            cluster.resume_node(node_id)
    assert code == 503, refused
    request_id = refused["request_id"]
    assert request_id and "retry with the same request_id" in refused["error"]
    deadline = time.monotonic() + 30
    while True:
        node_id = cluster.wait_for_leader(1)
        code, answer = cluster.request(
            node_id, "PUT", path, {"value": "v", "request_id": request_id}
        )
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert code == 200, answer
    # Every node answers a further retry with the same instance. The node that answered has
    # applied it and says so; another may not have heard yet that it was chosen and answer from
    # its own first application with "duplicate": false (README, "Exactly once").
    for retry_at in [*(n for n in cluster.nodes if n != node_id), node_id]:
        while True:  # the paused nodes are back: a 1 s request timeout may still meet an election
            code, again = cluster.request(
                retry_at, "PUT", path, {"value": "v", "request_id": request_id}
            )
            if code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 200 and again["instance"] == answer["instance"], again
    assert again["duplicate"], again


def test_a_request_id_reused_for_another_command_on_a_follower_gets_409(
    shared_cluster: Cluster,
) -> None:
    """Right after the first command was acknowledged, a follower may not have applied it yet
    (it applies late what nobody there waits for): the other command under the same id then
    waited for the id's outcome and got the first command's result as its own, a 200 for a
    write that never happened. The waiter now checks the command it waits for."""
    for attempt in range(5):
        key, request_id = f"reused-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex}"
        first = shared_cluster.request(
            1, "PUT", f"/api/kv/1/{key}", {"value": "x", "request_id": request_id}
        )
        assert first[0] == 200, first
        follower = 3 if first[1].get("leader") != 3 else 2
        code, body = shared_cluster.request(
            follower, "PUT", f"/api/kv/1/{key}", {"value": "y", "request_id": request_id}
        )
        assert code == 409, (attempt, code, body)
        assert "already used for a different command" in body["error"]
        _, read = shared_cluster.request(follower, "GET", f"/api/kv/1/{key}")
        assert read["value"] == "x"
