"""Minimal reproductions of product bugs the Jepsen harness found.

Each is marked ``xfail(strict=True)`` while the bug is open: the suite stays green, and the fix
turns the test into an XPASS failure, the cue to drop the marker.
"""

from __future__ import annotations

import time

import pytest

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
