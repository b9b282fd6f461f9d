"""``/metrics``, ``/readyz`` and ``/healthz`` of real nodes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.e2e

REQUIRED_FAMILIES = {
    "paxos_commits": "counter",
    "paxos_proposals": "counter",
    "paxos_elections": "counter",
    "paxos_step_downs": "counter",
    "paxos_forwarded_commands": "counter",
    "paxos_event_loop_stalls": "counter",
    "paxos_storage_commit_seconds": "histogram",
    "paxos_request_seconds": "histogram",
    "paxos_ballot_round": "gauge",
    "paxos_promised_round": "gauge",
    "paxos_chosen_index": "gauge",
    "paxos_applied_index": "gauge",
    "paxos_rebuilding": "gauge",
    "paxos_is_leader": "gauge",
    "paxos_leader_node": "gauge",
    "paxos_peer_connected": "gauge",
}


def get(cluster: Cluster, node_id: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(cluster.nodes[node_id].url + path, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(cluster: Cluster, node_id: int) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}``, parsed by prometheus-client's own parser."""
    code, text = get(cluster, node_id, "/metrics")
    assert code == 200, text
    samples: dict[tuple[str, tuple], float] = {}
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    for name, kind in REQUIRED_FAMILIES.items():
        assert families.get(name) == kind, f"node {node_id}: {name} missing or not a {kind}"
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_counters_move_with_commands(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    before = {node_id: scrape(cluster, node_id) for node_id in cluster.nodes}
    commands = 5
    for n in range(commands):
        command = json.dumps({"op": "put", "key": f"metrics-{uuid.uuid4().hex}", "value": str(n)})
        answer = cluster.submit(1, 1, command)
    cluster.wait_for_applied(1, answer["instance"])
    after = {node_id: scrape(cluster, node_id) for node_id in cluster.nodes}

    # Node 1 proposed them: request counters and the latency histogram moved by exactly that.
    assert value(after[1], "paxos_proposals_total", group="1", outcome="ok") - value(
        before[1], "paxos_proposals_total", group="1", outcome="ok"
    ) == pytest.approx(commands)
    assert value(after[1], "paxos_request_seconds_count", group="1", outcome="ok") - value(
        before[1], "paxos_request_seconds_count", group="1", outcome="ok"
    ) == pytest.approx(commands)
    for node_id in cluster.nodes:
        # Every node applied them (other tests may add more, never fewer).
        moved = value(after[node_id], "paxos_commits_total", group="1") - value(
            before[node_id], "paxos_commits_total", group="1"
        )
        assert moved >= commands, (node_id, moved)
        assert value(after[node_id], "paxos_storage_commit_seconds_count") > value(
            before[node_id], "paxos_storage_commit_seconds_count"
        )
        assert value(after[node_id], "paxos_applied_index", group="1") >= answer["instance"]
        assert value(after[node_id], "paxos_rebuilding", group="1") == 0
        assert value(after[node_id], "paxos_chosen_index", group="1") >= answer["instance"]
        for peer_id in cluster.nodes:
            if peer_id != node_id:
                link = {"peer": str(peer_id), "direction": "out"}
                assert value(after[node_id], "paxos_peer_connected", **link) == 1, link
    # Exactly one leader per group, and it won an election to get there.
    for group in ("1", "2"):
        leaders = [n for n in cluster.nodes if value(after[n], "paxos_is_leader", group=group)]
        assert len(leaders) == 1, (group, leaders)
        assert value(after[leaders[0]], "paxos_elections_total", group=group, result="won") >= 1
        assert value(after[leaders[0]], "paxos_ballot_round", group=group) >= 1
        for node_id in cluster.nodes:
            assert value(after[node_id], "paxos_leader_node", group=group) == leaders[0]


def wait_for_status(cluster: Cluster, node_id: int, path: str, status: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        code, body = get(cluster, node_id, path)
        if code == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} on node {node_id}: {code} {body}, wanted {status}")
        time.sleep(0.1)


def test_readyz_turns_unready_when_cut_off_from_the_majority(cluster_factory) -> None:
    cluster: Cluster = cluster_factory()
    body = json.loads(wait_for_status(cluster, 1, "/readyz", 200, timeout=15))
    assert body["status"] == "ready"
    assert body["reachable"] >= 2  # a majority; the third link may still be connecting

    cluster.kill_node(2)
    cluster.kill_node(3)
    body = json.loads(wait_for_status(cluster, 1, "/readyz", 503, timeout=15))
    assert body["status"] == "unready"
    assert any("reaches 1 of 3 nodes" in reason for reason in body["reasons"]), body
    assert body["error"]
    # Alive but unready: the liveness probe must not get the node restarted.
    assert get(cluster, 1, "/healthz")[0] == 200

    # With a majority back (and a leader elected), it is ready again.
    cluster.start_node(2)
    body = json.loads(wait_for_status(cluster, 1, "/readyz", 200, timeout=30))
    assert body["reachable"] == 2
    assert all(group["leader"] in (1, 2) for group in body["groups"])
