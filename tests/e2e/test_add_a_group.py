"""Adding a group to a running cluster node by node, as the README says: each restarted node is
ready again while too few nodes list the new group for it to have a leader (``/readyz`` notes
it), votes in it at once (the group is new to its database, not the database to the group), and
the group serves as soon as a majority lists it."""

from __future__ import annotations

import pytest

from tests.fixtures.cluster import Cluster, kv_put, wait_for

pytestmark = pytest.mark.e2e

WITH_GROUP_3 = {"groups": [1, 3]}


def readyz(cluster: Cluster, node_id: int) -> tuple[int, dict]:
    return cluster.request(node_id, "GET", "/readyz", token=None, timeout=5)


def test_a_group_added_node_by_node_keeps_each_restarted_node_ready(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(groups=(1,))
    cluster.submit(1, 1, kv_put("before", "1"))

    cluster.stop_node(3)
    cluster.config_overrides[3] = WITH_GROUP_3
    cluster.start_node(3)
    wait_for(lambda: readyz(cluster, 3)[0] == 200, "node 3 to be ready with group 3 alone")
    _, ready = readyz(cluster, 3)
    assert ready["notes"] == [
        "group 3: 1 of 3 nodes list it so far; it gets a leader once a majority do"
    ]
    peers = {peer["node_id"]: peer["groups"] for peer in cluster.status(3)["peers"]["peers"]}
    assert peers == {1: [1], 2: [1]}
    assert not cluster.group_states(3)[3].get("rebuilding")  # new to the database: it votes

    cluster.stop_node(1)
    cluster.config_overrides[1] = WITH_GROUP_3
    cluster.start_node(1)
    wait_for(lambda: cluster.leader(3, among=[1, 3]) is not None, "group 3 to get a leader")
    assert cluster.submit(3, 3, kv_put("added", "yes"))["instance"] == 1
    wait_for(lambda: all(readyz(cluster, n)[0] == 200 for n in (1, 3)), "nodes 1 and 3 to be ready")
    assert readyz(cluster, 3)[1]["notes"] == []  # a majority lists it: it counts again
    assert "does not vote" not in cluster.tail(3, 400) + cluster.tail(1, 400)
