"""A node whose database fails exits (status 1) for its supervisor to restart it, and a restart
recovers it. The failure is real: PostgreSQL refuses new connections to the node's database and
terminates the ones it has (a database that is down: a node replaces connections its server
closed, consensus/storage/reconnect.py, and here the replacement fails too). Before, the node
stopped its runtime but kept serving HTTP: ``/healthz`` said ok, ``/readyz`` ready, and it
stayed out of the cluster until someone restarted it by hand."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from tests.fixtures.cluster import POSTGRES_URL, Cluster, kv_put, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def allow_connections(database: str, allowed: bool) -> None:
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.SQL("true" if allowed else "false")
            )
        )


def terminate_connections(database: str) -> int:
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def test_a_node_whose_database_fails_exits_and_recovers_when_restarted(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(backend="postgres", groups=(1,))
    cluster.submit(1, 1, kv_put("before", "1"))
    victim = 3
    database = f"{cluster.database_prefix}_n{victim}"
    allow_connections(database, False)
    try:
        assert terminate_connections(database) > 0
        process = cluster.nodes[victim].process
        assert process is not None
        deadline = time.monotonic() + 30
        written = 0
        while process.poll() is None and time.monotonic() < deadline:
            cluster.submit(1, 1, kv_put(f"during-{written}", "v"))  # node 3 votes: it must write
            written += 1
    finally:
        allow_connections(database, True)
    assert process.poll() == 1, cluster.tail(victim)
    log = cluster.tail(victim, lines=80)
    assert "stopped after a storage failure" in log and "exits with status 1" in log, log
    assert "Traceback" not in log.split("stopping the process after the storage failure")[-1]
    cluster.submit(2, 1, kv_put("without-3", "v"))  # the others go on
    cluster.start_node(victim)
    last = cluster.submit(1, 1, kv_put("after", "v"))["instance"]
    wait_for(
        lambda: cluster.caught_up(victim, 1, last),
        "the restarted node to catch up",
    )
