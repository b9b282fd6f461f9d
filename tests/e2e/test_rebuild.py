"""A node whose database file was deleted comes back as new storage: it votes only after every
peer has answered and it has learned the log they reported (consensus/core/rebuild.py). A node
given another node's database refuses to start (consensus/storage/identity.py)."""

from __future__ import annotations

import io
import sqlite3
import time

import pytest
from django.core.management import call_command

from tests.fixtures.cluster import TOKEN, Cluster, kv_put, wait_for
from tests.fixtures.nemesis import ProxyNetwork

pytestmark = pytest.mark.e2e


def test_a_node_whose_database_was_deleted_rebuilds_before_it_votes(cluster_factory) -> None:
    cluster: Cluster = cluster_factory()
    last = 0
    for number in range(20):
        last = cluster.submit(1 + number % 3, 1, kv_put(f"k{number}", f"v{number}"))["instance"]
    cluster.wait_for_applied(1, last)
    reference = cluster.chosen_log(1, 1)

    cluster.stop_node(3)
    cluster.delete_database(3)
    cluster.stop_node(2)
    cluster.start_node(3)
    # Node 2 is down: node 3 cannot know what a lost vote of its own might have been.
    time.sleep(6.0)  # runtime.notices.REBUILD_PATIENCE: the node says whom it waits for
    assert all(
        g["rebuilding"] and g["rebuild_target"] is None for g in cluster.group_states(3).values()
    )
    assert cluster.status(3)["groups"][0]["role"] == "follower"
    assert all(g["rebuild_waiting_for"] == [2] for g in cluster.group_states(3).values())
    code, body = cluster.request(3, "GET", "/readyz")
    assert code == 503 and any("rebuilding" in reason for reason in body["reasons"]), body
    code, body = cluster.request(3, "GET", "/api/kv/1/k7?consistency=local")
    assert code == 503 and "rebuilding" in str(body), body  # not a "not found"
    out = io.StringIO()
    call_command("paxos", "--url", cluster.nodes[3].url, "--token", TOKEN, "status", stdout=out)
    assert "rebuilding" in out.getvalue(), out.getvalue()

    cluster.start_node(2)
    wait_for(
        lambda: not any(g["rebuilding"] for g in cluster.group_states(3).values()),
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
    assert "Service Unavailable: /readyz" not in log  # a probe's answer is no server error
    assert "database was new but the group has a history" in log


def wait_for_leader_node(cluster: Cluster, group_id: int, node_id: int) -> None:
    wait_for(lambda: cluster.leader(group_id) == node_id, f"node {node_id} to lead")


@pytest.mark.parametrize("rebuild", [True, False], ids=["rebuild", "negative-control"])
def test_a_write_only_a_lost_database_and_a_stopped_node_hold_survives(
    cluster_factory, monkeypatch, rebuild: bool
) -> None:
    """Node 3 is cut off while nodes 1 and 2 choose a write; then node 1 stops and node 2 comes
    back with a new database. Nodes 2 and 3 are a majority with no record of the write.

    Rebuilding, node 2 waits for node 1 (nothing can be chosen meanwhile) and the write
    survives. The negative control (``PAXOS_UNSAFE_SKIP_REBUILD``: node 2 votes at once) shows
    what the test catches: nodes 2 and 3 choose another value in the write's instance, a read
    misses the acknowledged write."""
    with ProxyNetwork([1, 2, 3]) as network:
        cluster: Cluster = cluster_factory(start=False, groups=(1,), link_ports=network.link_ports)
        network.set_targets({n: node.port for n, node in cluster.nodes.items()})
        cluster.start()
        wait_for_leader_node(cluster, 1, 1)  # group 1 prefers node 1
        network.isolate(3)
        code, answer = cluster.request(1, "PUT", "/api/kv/1/acknowledged", {"value": "x"})
        assert code == 200, answer
        instance = answer["instance"]
        cluster.kill_node(1)
        cluster.kill_node(2)
        cluster.delete_database(2)
        if not rebuild:
            monkeypatch.setenv("PAXOS_UNSAFE_SKIP_REBUILD", "1")
        cluster.start_node(2)
        network.heal()
        code, answer = cluster.request(3, "PUT", "/api/kv/1/probe", {"value": "y"}, timeout=15)
        read_code, read = cluster.request(3, "GET", "/api/kv/1/acknowledged", timeout=15)
        if not rebuild:
            assert code == 200 and answer["instance"] == instance, answer
            assert read_code == 404, read  # the acknowledged write is gone
            # The acknowledged write's instance holds the probe instead. (Node 1's own log is no
            # witness: once restarted it may learn the probe there, having not yet recorded the
            # write chosen when it was killed.)
            assert "probe" in dict(cluster.chosen_log(3, 1))[instance]
            return
        assert code == 503 and read_code == 503, (answer, read)  # no majority of voters
        assert cluster.group_states(2)[1]["rebuilding"]
        cluster.start_node(1)
        wait_for(lambda: cluster.caught_up(2, 1), "node 2 to rebuild")
        for node_id in (1, 2, 3):
            code, read = cluster.request(node_id, "GET", "/api/kv/1/acknowledged")
            assert (code, read["value"]) == (200, "x"), (node_id, read)
        logs = [cluster.chosen_log(n, 1)[:instance] for n in (1, 2, 3)]
        assert logs[0] == logs[1] == logs[2]


def test_a_node_refuses_another_nodes_database(cluster_factory) -> None:
    """A copy of node 1's database in node 3's place: node 3 would vote with node 1's votes.
    It refuses to start, says whose database it is and what to do; with an empty database
    instead it rebuilds."""
    cluster: Cluster = cluster_factory(groups=(1,))
    cluster.submit(1, 1, kv_put("k", "v"))
    cluster.stop_node(3)
    cluster.delete_database(3)
    data = cluster.folder / "data"
    with (
        sqlite3.connect(data / "node1.sqlite3") as source,
        sqlite3.connect(data / "node3.sqlite3") as copy,
    ):
        source.backup(copy)
    cluster.start_node(3, wait=False)
    process = cluster.nodes[3].process
    assert process is not None and process.wait(timeout=60) == 1
    log = cluster.tail(3)
    assert "this database belongs to node 1" in log and "not to node 3" in log, log
    assert "Traceback" not in log, log
    cluster.delete_database(3)
    cluster.start_node(3)
    wait_for(lambda: cluster.caught_up(3, 1), "node 3 to rebuild")
