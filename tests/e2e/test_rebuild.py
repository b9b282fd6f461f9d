"""A node whose database file was deleted comes back as new storage: it votes only after every
peer has answered and it has learned the log they reported (consensus/core/rebuild.py)."""

from __future__ import annotations

import json
import time

import pytest

from tests.fixtures.cluster import Cluster, ClusterError

pytestmark = pytest.mark.e2e


def kv_put(key: str, value: str) -> str:
    return json.dumps({"op": "put", "key": key, "value": value})


def group_states(cluster: Cluster, node_id: int) -> dict[int, dict]:
    return {group["group_id"]: group for group in cluster.status(node_id)["groups"]}


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise ClusterError(f"timed out waiting for {what}")


def test_a_node_whose_database_was_deleted_rebuilds_before_it_votes(cluster_factory) -> None:
    cluster: Cluster = cluster_factory()
    last = 0
    for number in range(20):
        last = cluster.submit(1 + number % 3, 1, kv_put(f"k{number}", f"v{number}"))["instance"]
    cluster.wait_for_applied(1, last)
    reference = cluster.chosen_log(1, 1)

    cluster.stop_node(3)
    for path in (cluster.folder / "data").glob("node3.sqlite3*"):
        path.unlink()
    cluster.stop_node(2)
    cluster.start_node(3)
    # Node 2 is down: node 3 cannot know what a lost vote of its own might have been.
    time.sleep(6.0)  # runtime.node.REBUILD_PATIENCE: the node says whom it waits for
    assert all(
        g["rebuilding"] and g["rebuild_target"] is None for g in group_states(cluster, 3).values()
    )
    assert cluster.status(3)["groups"][0]["role"] == "follower"
    code, body = cluster.request(3, "GET", "/readyz")
    assert code == 503 and any("rebuilding" in reason for reason in body["reasons"]), body

    cluster.start_node(2)
    wait_for(
        lambda: not any(g["rebuilding"] for g in group_states(cluster, 3).values()),
        "node 3 to finish rebuilding",
    )
    after = cluster.submit(3, 1, kv_put("after", "rebuild"))["instance"]
    cluster.wait_for_applied(1, after)
    rebuilt = cluster.chosen_log(3, 1)
    assert rebuilt[: len(reference)] == reference
    assert rebuilt == cluster.chosen_log(1, 1)
    code, body = cluster.request(3, "GET", "/api/kv/1/k7")
    assert (code, body["value"]) == (200, "v7")
    log = (cluster.folder / "node3.log").read_text()
    assert "waiting for node(s) 2" in log
    assert "database was new but the group has a history" in log
