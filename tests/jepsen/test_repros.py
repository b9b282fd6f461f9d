"""Minimal reproductions of the product bugs the Jepsen harness found, kept as regression tests.

An open bug's test is marked ``xfail`` (strict when it reproduces every time: the fix turns it
into an XPASS failure, the cue to drop the marker). A test that needs a long run is on demand:
``JEPSEN_REPROS=1 pytest tests/jepsen/test_repros.py`` (or any ``--soak``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cluster import Cluster
from tests.fixtures.nemesis import ProxyNetwork

from .client import NotSent, http_call
from .workloads import JepsenRun, Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def on_demand(request: pytest.FixtureRequest) -> None:
    if not (os.environ.get("JEPSEN_REPROS") or request.config.getoption("soak")):
        pytest.skip("long repro: run with JEPSEN_REPROS=1 (or --soak)")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ProxyNetwork]]:
    """One 3-node cluster (group 1, 2 s request timeout) whose peer links go through proxies.
    Tests heal the network before they return."""
    network = ProxyNetwork([1, 2, 3])
    cluster = Cluster(
        Path(tmp_path_factory.mktemp("repro")),
        size=3,
        groups=(1,),
        request_timeout=2.0,
        link_ports=network.link_ports,
    )
    try:
        network.set_targets({n: node.port for n, node in cluster.nodes.items()})
        cluster.start()
        yield cluster, network
    finally:
        cluster.close()
        network.close()


def stable_leader(cluster: Cluster) -> int:
    """The leader once it settled (the group's preferred leader takes over soon after start)."""
    deadline = time.monotonic() + 15
    leader = cluster.wait_for_leader(1)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = cluster.wait_for_leader(1)
        if again == leader:
            return leader
        leader = again
    return leader


def call(cluster: Cluster, node: int, method: str, path: str, body: object = None) -> int | None:
    try:
        return http_call(cluster.nodes[node].port, method, path, body, timeout=5)[0]
    except (NotSent, OSError):
        return None


def test_a_starting_node_never_calls_a_configured_group_unknown(cluster_factory) -> None:
    """Found by the bank workload (fixed in 2f724f2): ``PaxosNode.start()`` registered groups one
    by one while daphne already served, so a starting node answered 404 "unknown group" for a
    configured group; a client that believes a 404 gives up on a write it should retry."""
    cluster = cluster_factory(start=False, size=1, groups=(1, 2, 3, 4, 5, 6))
    cluster.start_node(1, wait=False)
    port = cluster.nodes[1].port
    answers: list[tuple[int, object]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, body = http_call(port, "GET", "/api/kv/6/key?consistency=local", timeout=5)
        except (NotSent, OSError):
            continue
        answers.append((status, body))
        if status == 404 and isinstance(body, dict) and "key" in body:
            break  # group 6 is up: the key is just absent
    unknown = [a for a in answers if "unknown group" in str(a[1])]
    assert not unknown, f"{len(unknown)} of {len(answers)} answers: {unknown[:3]}"
    # The loop ended because group 6 answered, not because time ran out (a node that never
    # answered, or answered something else, would pass the check above with nothing checked).
    assert answers, "the node never answered in 30 s"
    status, body = answers[-1]
    assert status == 404 and isinstance(body, dict) and body.get("key") == "key", answers[-3:]


def test_follower_reads_complete_when_links_are_slow(proxied) -> None:
    """Fixed in a54db8d: a follower re-asked the leader for a read index every retry_ticks (70 ms
    with a 300 ms election timeout) and forgot the asks in flight (``Replica._requeue_reads``),
    so once a round trip to the leader took longer, no ReadIndexReply was ever accepted: every
    linearizable read on a follower failed with 503 although a leader was up and the majority
    connected (the threshold was about 50 ms each way into the leader)."""
    cluster, network = proxied
    stable_leader(cluster)
    network.delay(0.06)  # every link, each way: far below the election timeout
    try:
        time.sleep(0.3)
        assert call(cluster, 1, "PUT", "/api/kv/1/slow", {"value": "v"}) == 200
        statuses = {
            n: [call(cluster, n, "GET", "/api/kv/1/slow") for _ in range(2)] for n in (2, 3)
        }
    finally:
        network.heal()
    assert all(s == [200, 200] for s in statuses.values()), f"linearizable reads: {statuses}"


def test_a_leader_that_hears_nobody_is_replaced(proxied) -> None:
    """Fixed in a54db8d (leader stickiness): a leader cut off one way (it sends, hears nobody)
    stepped down and campaigned forever, and every Prepare it sent reset the followers' election
    timers (``Replica._on_prepare``), so the connected majority never elected a leader and the
    group stalled for as long as the fault lasted (in about 3 runs of 4)."""
    cluster, network = proxied
    leader = stable_leader(cluster)
    followers = [n for n in cluster.nodes if n != leader]
    network.cut([(follower, leader) for follower in followers])  # they hear it, it hears none
    try:
        deadline = time.monotonic() + 6  # a few election timeouts (300 ms) are plenty
        written = False
        while time.monotonic() < deadline and not written:
            for follower in followers:
                written = (
                    written
                    or call(cluster, follower, "PUT", "/api/kv/1/oneway", {"value": "v"}) == 200
                )
        roles = {n: cluster.status(n)["groups"][0] for n in cluster.nodes}
    finally:
        network.heal()
    assert written, f"no write chosen in 6 s with nodes {followers} connected: {roles}"


def test_log_read_barrier_is_linearizable_under_slow_links(
    on_demand, cluster_factory, monkeypatch
) -> None:
    """Fixed in a54db8d: with PAXOS_READ_MODE=log, ``PaxosNode.log_barrier`` let a read join a
    barrier submitted before the read began; on a node that learns chosen instances late (slow
    links into it), that barrier could be applied before a write acknowledged elsewhere before
    the read began, and the read returned the older value (caught in every 20 s run).

    Fixed again in c19f250: the read went on as soon as its marker's result arrived, which
    is before the marker's transaction commits, and a slow node applies writes ordered before
    the marker in that same transaction; the KV store's reads see committed rows only (caught
    in about 1 soak run of 3 once followers applied in bigger transactions; deterministic in
    ``tests/node/test_read_barriers.py``)."""
    monkeypatch.setenv("PAXOS_READ_MODE", "log")  # the nodes inherit the test's environment
    settings = Settings(
        nodes=3,
        duration=20,
        clients=8,
        keys_per_group=1,
        bank_clients=0,
        faults=("slow-node",),
        quiet=(0.2, 0.5),
        fault_duration=(3.0, 6.0),
        mix=(("get", 6), ("put", 3), ("cas", 1)),
    )
    report = JepsenRun(settings, cluster_factory).run()
    print(report.render())
    assert report.valid, report.render()
