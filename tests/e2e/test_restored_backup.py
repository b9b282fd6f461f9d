"""A node restarted on a backup of its own database, older than votes it has sent, rebuilds
before it votes: the leader remembers those votes and says so when the node asks
(consensus/core/audit.py). Node 3 follows here (group 1 prefers node 1); a restored leader is
caught by the heartbeats that tell its peers how far its own votes go. The core's tests
(tests/core/test_audit.py) show the value such a node could otherwise lose; here real nodes
find the stale database and recover."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cluster import Cluster, kv_put, wait_for

pytestmark = pytest.mark.e2e


def test_a_node_restored_from_a_backup_rebuilds_before_it_votes(
    cluster_factory, tmp_path: Path
) -> None:
    # An election timeout of 1 s (as by default): node 3 waits up to half of it for the
    # answers, the leader's link to it reconnecting meanwhile on a busy machine.
    cluster: Cluster = cluster_factory(groups=(1,), timeout_ms=1000)
    wait_for(lambda: cluster.leader(1) == 1, "node 1, group 1's preferred leader, to lead")
    first = cluster.submit(1, 1, kv_put("before", "the backup"))["instance"]
    cluster.wait_for_applied(1, first)
    backup = tmp_path / "node3-backup.sqlite3"
    cluster.back_up_database(3, backup)
    last = first
    for number in range(5):  # node 3 votes in these: the leader sees its Accepted
        last = cluster.submit(1, 1, kv_put(f"k{number}", f"v{number}"))["instance"]
    cluster.wait_for_applied(1, last)

    cluster.stop_node(3)
    cluster.restore_database(3, backup)
    cluster.start_node(3)
    wait_for(
        lambda: cluster.caught_up(3, 1, last),
        "node 3 to rebuild and catch up",
    )
    log = (cluster.folder / "node3.log").read_text()
    assert "this node's database is older than votes it sent" in log, cluster.tail(3)
    assert "saw it vote in instance" in log or "saw it promise ballot" in log, cluster.tail(3)
    assert "database was older than votes it had sent: it learned the log" in log
    after = cluster.submit(3, 1, kv_put("after", "restore"))["instance"]
    cluster.wait_for_applied(1, after)
    assert cluster.chosen_log(3, 1) == cluster.chosen_log(1, 1)
    code, body = cluster.request(3, "GET", "/api/kv/1/k4?consistency=local")
    assert (code, body.get("value")) == (200, "v4"), body
