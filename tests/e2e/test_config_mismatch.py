"""A node whose config lists other nodes than the rest of the cluster's is refused by its peers.

A majority is counted over the node list, so nodes that count over different lists could each
see "a majority" the other does not see (3 of {1..5} and 2 of {1, 2, 3} need not overlap) and
choose two values for one instance. The peer handshake compares the lists
(``consensus/transport/auth.py``); the unit tests there are the negative controls."""

from __future__ import annotations

import pytest

from consensus.config import free_ports
from tests.fixtures.cluster import Cluster, kv_put, wait_for

pytestmark = pytest.mark.e2e


def test_a_node_with_another_node_list_is_refused_and_the_others_go_on(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(groups=(1,))
    cluster.submit(1, 1, kv_put("before", "1"))
    cluster.stop_node(3)
    stranger = {"id": 4, "host": "127.0.0.1", "port": free_ports(1)[0]}
    cluster.config_overrides[3] = {"nodes": [*cluster.document["nodes"], stranger]}
    cluster.start_node(3, wait=False)
    expected = (
        "node 3's cluster config lists nodes 1, 2, 3, 4, this node's lists 1, 2, 3: every node "
        "must list the same nodes"
    )
    for node_id in (1, 2):
        wait_for(lambda n=node_id: expected in cluster.tail(n, 400), f"node {node_id} to refuse")
    wait_for(lambda: "this node's lists 1, 2, 3, 4" in cluster.tail(3, 400), "node 3 to say it too")
    cluster.submit(1, 1, kv_put("during", "2"))  # nodes 1 and 2 are a majority
    peers = cluster.status(3)["peers"]["peers"]
    assert not any(peer["connected_out"] or peer["connected_in"] for peer in peers), peers
    assert cluster.tail(1, 400).count(expected) == 1  # it retries; the log says it once a minute
    assert "Traceback" not in cluster.tail(1, 400) + cluster.tail(3, 400)

    cluster.stop_node(3)  # the same list again: node 3 links up and catches up
    del cluster.config_overrides[3]
    cluster.start_node(3)
    wait_for(
        lambda: cluster.request(3, "GET", "/api/kv/1/during?consistency=local")[0] == 200,
        "node 3 to learn the write it missed",
    )
