"""A node whose config lists other nodes, or names another state machine for a group, than the
rest of the cluster's is refused by its peers.

A majority is counted over the node list, so nodes that count over different lists could each
see "a majority" the other does not see (3 of {1..5} and 2 of {1, 2, 3} need not overlap) and
choose two values for one instance. And every node applies a group's chosen commands to the
machine its own config names, so two machines for one group answer the same command differently
(the replicas diverge). The peer handshake compares both (``consensus/transport/auth.py``); the
unit tests there are the negative controls. Node 3 comes back on a new database here: a node
whose own database voted under the old config refuses to start (test_config_changes.py)."""

from __future__ import annotations

import pytest

from consensus.config import free_ports
from tests.fixtures.cluster import Cluster, kv_put, wait_for

pytestmark = pytest.mark.e2e


def refusal(node_id: int, lists: str, other_id: int, other_lists: str) -> str:
    """The refusal's words, the same in either node's log."""
    return f"node lists differ: node {node_id} lists {lists}, node {other_id} lists {other_lists};"


def test_a_node_with_another_node_list_is_refused_and_the_others_go_on(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(groups=(1,))
    cluster.submit(1, 1, kv_put("before", "1"))
    cluster.stop_node(3)
    cluster.delete_database(3)  # with its own votes it would refuse to start (test_config_changes)
    stranger = {"id": 4, "host": "127.0.0.1", "port": free_ports(1)[0]}
    cluster.config_overrides[3] = {"nodes": [*cluster.document["nodes"], stranger]}
    cluster.start_node(3, wait=False)
    for node_id in (1, 2):
        said = refusal(3, "1, 2, 3, 4", node_id, "1, 2, 3")
        wait_for(lambda s=said, n=node_id: s in cluster.tail(n, 400), f"node {node_id} to refuse")
    said = refusal(1, "1, 2, 3", 3, "1, 2, 3, 4")  # node 3 refuses their links too
    wait_for(lambda: said in cluster.tail(3, 400), "node 3 to refuse them")
    cluster.submit(1, 1, kv_put("during", "2"))  # nodes 1 and 2 are a majority
    peers = cluster.status(3)["peers"]["peers"]
    assert not any(peer["connected_out"] or peer["connected_in"] for peer in peers), peers
    log = cluster.tail(1, 400)
    assert log.count(refusal(3, "1, 2, 3, 4", 1, "1, 2, 3")) in (1, 2)  # said once a minute
    assert "closing peer link from node 3 (" in log  # named: it proved the secret
    assert "Traceback" not in log + cluster.tail(3, 400)
    assert "sent no node list" not in log  # nodes 1 and 2 compared their lists too

    restart_node_3_with_the_cluster_config(cluster, written_in_group=1)


def restart_node_3_with_the_cluster_config(cluster: Cluster, written_in_group: int) -> None:
    """Node 3 again with the config the others have: it links up and learns the write ``during``
    it missed."""
    cluster.stop_node(3)
    del cluster.config_overrides[3]
    cluster.start_node(3)
    wait_for(
        lambda: cluster.request(3, "GET", f"/api/kv/{written_in_group}/during?consistency=local")[0]
        == 200,
        "node 3 to learn the write it missed",
    )
    wait_for(
        lambda: all(
            peer["connected_out"] and peer["connected_in"]
            for peer in cluster.status(3)["peers"]["peers"]
        ),
        "node 3's links to come up",
    )


def machines_differ(node_id: int, machine: str, other_id: int, other_machine: str) -> str:
    """The refusal's line, word for word the same in both nodes' logs (lower node id first)."""
    return (
        f'group state machines differ: group 2 runs "{machine}" on node {node_id} and '
        f'"{other_machine}" on node {other_id}; every node must run the same state machine for a '
        "group"
    )


def test_a_node_running_another_machine_for_a_group_is_refused_and_the_others_go_on(
    cluster_factory,
) -> None:
    cluster: Cluster = cluster_factory(groups=(1, 2))
    cluster.submit(1, 2, kv_put("before", "1"))
    cluster.stop_node(3)
    cluster.delete_database(3)  # with its own votes it would refuse to start (test_config_changes)
    cluster.config_overrides[3] = {
        "groups": [{"id": 1, "stateMachine": "kv"}, {"id": 2, "stateMachine": "log"}]
    }
    cluster.start_node(3, wait=False)
    lines = {node_id: machines_differ(node_id, "kv", 3, "log") for node_id in (1, 2)}
    for node_id, said in lines.items():  # each refuses node 3, and node 3 refuses each
        for logged_by in (node_id, 3):
            wait_for(
                lambda s=said, n=logged_by: s in cluster.tail(n, 400),
                f"node {logged_by} to refuse the link between nodes {node_id} and 3",
            )
    cluster.submit(1, 2, kv_put("during", "2"))  # nodes 1 and 2 are a majority
    cluster.submit(2, 1, kv_put("during", "3"))
    peers = cluster.status(3)["peers"]["peers"]
    assert not any(peer["connected_out"] or peer["connected_in"] for peer in peers), peers
    logs = {node_id: cluster.tail(node_id, 400) for node_id in (1, 2, 3)}
    for node_id, said in lines.items():  # it retries: said once a minute
        assert logs[node_id].count(said) in (1, 2), logs[node_id]  # once a minute
        assert logs[3].count(said) in (1, 2), logs[3]
    assert "closing peer link from node 3 (" in logs[1]  # named: it proved the secret
    assert "closing peer link from node 1 (" in logs[3]
    assert "group 1 runs" not in logs[3]  # only the group that differs is named
    assert "Traceback" not in "".join(logs.values())
    assert "sent no group list" not in logs[1]  # nodes 1 and 2 compared their groups too

    restart_node_3_with_the_cluster_config(cluster, written_in_group=2)
