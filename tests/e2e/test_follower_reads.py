"""Followers apply late what nobody on them waits for (``consensus/runtime/backlog.py``); a
linearizable read on a follower must still see every write acknowledged before it began.

Under a steady background load on the leader, every turn of a follower holds votes, so it
holds back the applications of the commands nobody on it waits for. A write acknowledged by the
leader and then read on each follower is exactly such a command: the read must wait for it.

Checked by hand against a runtime that counted held instances as applied and did not count
reads in progress as waiting: 3 of the 400 reads returned the previous value. (Either mistake
alone is covered by the other guard.) And against one that proposed a retry of a command it
already saw chosen again instead of answering from storage (the leader drops such a retry):
5 of the 100 retries timed out."""

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
    """A write acknowledged by the leader is seen by a linearizable read on every follower, and
    a retry of it on a follower gets its first result (the same instance), not a second write."""
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
    retried: list[str] = []
    try:
        for round_ in range(ROUNDS):
            value = str(round_)
            request_id = f"{key}-{round_}"
            body = {"value": value, "request_id": request_id}
            code, first = cluster.request(leader, "PUT", f"/api/kv/1/{key}", body)
            assert code == 200, first
            if round_ % 2:  # a retry on a follower whose backlog may hold the write
                follower = followers[round_ // 2 % len(followers)]
                code, again = cluster.request(follower, "PUT", f"/api/kv/1/{key}", body)
                if code != 200 or again["instance"] != first["instance"]:
                    retried.append(f"round {round_}, node {follower}: {code} {again} / {first}")
            for follower in followers:
                code, found = cluster.request(follower, "GET", f"/api/kv/1/{key}")
                if code != 200 or found["value"] != value:
                    stale.append(f"round {round_}, node {follower}: {code} {found}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures
    assert not stale, f"{len(stale)} stale reads, first: {stale[:3]}"
    assert not retried, f"{len(retried)} retries without their first result, first: {retried[:3]}"
    # Once the load stops, the followers' next turns without votes (clock ticks) apply what
    # they held: nobody has to ask.
    groups = cluster.status(leader)["groups"]
    chosen = next(group["chosen_upto"] for group in groups if group["group_id"] == 1)
    cluster.wait_for_applied(1, chosen, timeout=2.0)
