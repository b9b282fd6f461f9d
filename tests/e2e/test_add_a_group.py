"""Adding a group to a running cluster node by node, as the README says: each restarted node is
ready again while some node does not list the new group yet (``/readyz`` notes it), and the
group serves once every node lists it (its new rows rebuild on each node first, as a new
cluster's do)."""

from __future__ import annotations

import pytest

from tests.fixtures.cluster import Cluster, kv_put, wait_for

pytestmark = pytest.mark.e2e

WITH_GROUP_3 = {"groups": [1, 3]}


def readyz(cluster: Cluster, node_id: int) -> tuple[int, dict]:
    return cluster.request(node_id, "GET", "/readyz", token=None, timeout=5)


def restart_with_group_3(cluster: Cluster, node_id: int) -> None:
    cluster.stop_node(node_id)
    cluster.config_overrides[node_id] = WITH_GROUP_3
    cluster.start_node(node_id)


def test_a_group_added_node_by_node_keeps_each_restarted_node_ready(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(groups=(1,))
    cluster.submit(1, 1, kv_put("before", "1"))

    restart_with_group_3(cluster, 3)
    wait_for(lambda: readyz(cluster, 3)[0] == 200, "node 3 to be ready with group 3 alone")
    assert readyz(cluster, 3)[1]["notes"] == [
        "group 3: node(s) 1, 2 do not list it yet; it serves once every node does"
    ]
    peers = {peer["node_id"]: peer["groups"] for peer in cluster.status(3)["peers"]["peers"]}
    assert peers == {1: [1], 2: [1]}

    restart_with_group_3(cluster, 1)
    wait_for(lambda: readyz(cluster, 1)[0] == 200, "node 1 to be ready: node 2 lacks group 3")
    assert readyz(cluster, 1)[1]["notes"] == [
        "group 3: node(s) 2 do not list it yet; it serves once every node does"
    ]
    assert cluster.submit(3, 1, kv_put("during", "2"))["instance"] > 0  # group 1 goes on

    restart_with_group_3(cluster, 2)
    wait_for(lambda: cluster.leader(3) is not None, "group 3 to get a leader")
    assert cluster.submit(3, 3, kv_put("added", "yes"))["instance"] >= 1
    wait_for(lambda: all(readyz(cluster, n)[0] == 200 for n in (1, 2, 3)), "every node ready")
    assert all(readyz(cluster, n)[1]["notes"] == [] for n in (1, 2, 3))
