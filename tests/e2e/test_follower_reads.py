"""Followers apply late what nobody on them waits for (``consensus/runtime/backlog.py``); a
linearizable read on a follower must still see every write acknowledged before it began.

Under a steady background load on the leader, every turn of a follower holds votes, so it
holds back the applications of the commands nobody on it waits for. A write acknowledged by the
leader and then read on each follower is exactly such a command: the read must wait for it.

Checked by hand against a runtime that counted held instances as applied and did not count
reads in progress as waiting: 3 of the 400 reads returned the previous value. (Either mistake
alone is covered by the other guard.)"""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.e2e

BACKGROUND_WRITERS = 8
ROUNDS = 200


def test_a_read_on_a_follower_sees_the_write_acknowledged_before_it(
    shared_cluster: Cluster,
) -> None:
    cluster = shared_cluster
    leader = cluster.wait_for_leader(1)
    followers = [node_id for node_id in cluster.nodes if node_id != leader]
    stop = threading.Event()
    failures: list[str] = []

    def background(writer: int) -> None:
        count = 0
        while not stop.is_set():
            code, body = cluster.request(
                leader, "PUT", f"/api/kv/1/load-{writer}-{count % 16}", {"value": str(count)}
            )
            if code != 200:
                failures.append(f"background put: {code} {body}")
                return
            count += 1

    threads = [threading.Thread(target=background, args=(i,)) for i in range(BACKGROUND_WRITERS)]
    for thread in threads:
        thread.start()
    stale: list[str] = []
    key = f"seen-{uuid.uuid4().hex[:8]}"
    try:
        for round_ in range(ROUNDS):
            value = str(round_)
            code, body = cluster.request(leader, "PUT", f"/api/kv/1/{key}", {"value": value})
            assert code == 200, body
            for follower in followers:
                code, body = cluster.request(follower, "GET", f"/api/kv/1/{key}")
                if code != 200 or body["value"] != value:
                    stale.append(f"round {round_}, node {follower}: {code} {body}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures
    assert not stale, f"{len(stale)} stale reads, first: {stale[:3]}"
    # Once the load stops, the followers' next turns without votes (clock ticks) apply what
    # they held: nobody has to ask.
    groups = cluster.status(leader)["groups"]
    chosen = next(group["chosen_upto"] for group in groups if group["group_id"] == 1)
    cluster.wait_for_applied(1, chosen, timeout=2.0)
