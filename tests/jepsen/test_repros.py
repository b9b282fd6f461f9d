"""Minimal reproductions of product bugs the Jepsen harness found.

Each is marked ``xfail(strict=True)`` while the bug is open: the suite stays green, and the fix
turns the test into an XPASS failure, the cue to drop the marker.
"""

from __future__ import annotations

import time

import pytest

from tests.fixtures.nemesis import ProxyNetwork

from .client import NotSent, http_call

pytestmark = pytest.mark.e2e


def test_a_starting_node_never_calls_a_configured_group_unknown(cluster_factory) -> None:
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


@pytest.mark.xfail(
    strict=True,
    reason="bug: a leader cut off one way (it sends, hears nobody) steps down and campaigns "
    "forever; every Prepare it sends resets the followers' election timers (Replica._on_prepare), "
    "so the connected majority never elects a leader and the group stalls for the whole fault",
)
def test_a_leader_that_hears_nobody_is_replaced(cluster_factory) -> None:
    with ProxyNetwork([1, 2, 3]) as network:
        cluster = cluster_factory(
            start=False, size=3, groups=(1,), request_timeout=2.0, link_ports=network.link_ports
        )
        network.set_targets({n: node.port for n, node in cluster.nodes.items()})
        cluster.start()
        leader = cluster.wait_for_leader(1)
        followers = [n for n in cluster.nodes if n != leader]
        network.cut([(follower, leader) for follower in followers])  # they hear it, it hears none
        deadline = time.monotonic() + 8  # a few election timeouts (300 ms) are plenty
        written = 0
        while time.monotonic() < deadline and not written:
            for follower in followers:
                try:
                    status, _ = http_call(
                        cluster.nodes[follower].port,
                        "PUT",
                        "/api/kv/1/key",
                        {"value": "v"},
                        timeout=3,
                    )
                except (NotSent, OSError):
                    continue
                written += status == 200
        roles = {n: cluster.status(n)["groups"][0] for n in cluster.nodes}
        assert written, f"no write chosen in 8 s with nodes {followers} connected: {roles}"
