"""Nodes on uvicorn (``runpaxos --server uvicorn``): a real 3-node cluster serves the KV API, peers
talk over uvicorn's websockets, and a node stopped with SIGTERM exits cleanly and keeps its data."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest

from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e


def test_uvicorn_cluster_serves_kv_and_survives_a_restart(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(server="uvicorn", groups=(1,))
    request = urllib.request.Request(
        f"{cluster.nodes[1].url}/api/status/", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["server"] == "uvicorn"

    key = f"uv-{uuid.uuid4().hex[:8]}"
    code, answer = cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": "first"})
    assert code == 200, answer
    code, answer = cluster.request(3, "GET", f"/api/kv/1/{key}?consistency=linearizable")
    assert (code, answer["value"]) == (200, "first"), answer
    cluster.wait_for_applied(1, answer["instance"])  # node 2 has it on disk before it stops

    cluster.stop_node(2)  # SIGTERM: the runtime stops, then uvicorn; the process exits 0
    assert cluster.nodes[2].process is not None
    assert cluster.nodes[2].process.returncode == 0, cluster.tail(2)
    log = cluster.nodes[2].log_path.read_text(errors="replace")
    assert "node 2 stopped" in log
    assert "Traceback" not in log and "Warning:" not in log, log  # e.g. a deprecation

    cluster.start_node(2)
    cluster.wait_for_leader(1)
    code, answer = cluster.request(2, "GET", f"/api/kv/1/{key}?consistency=local")
    assert (code, answer["value"]) == (200, "first"), answer  # from its own database
    code, answer = cluster.request(2, "GET", f"/api/kv/1/{key}")
    assert (code, answer["value"]) == (200, "first"), answer


def test_a_client_that_sends_a_large_body_anyway_reads_its_413_on_uvicorn(cluster_factory) -> None:
    """As under daphne (tests/api/test_live.py): urllib says ``Connection: close``, so uvicorn
    closed the connection after the early 413 with most of the body unread, and the client met
    a reset instead of the answer. The node now lingers: it drops the rest until the client is
    done."""
    cluster: Cluster = cluster_factory(server="uvicorn", groups=(1,))
    big = b'{"value": "' + b"x" * (32 * 1024 * 1024) + b'"}'  # past every socket buffer
    request = urllib.request.Request(
        f"{cluster.nodes[1].url}/api/kv/1/big",
        data=big,
        method="PUT",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 413
    code, answer = cluster.request(1, "PUT", "/api/kv/1/small", {"value": "ok"})
    assert code == 200, answer
