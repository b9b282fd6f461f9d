"""Every read of the log and of the exactly-once results searches an index, none scans a table.

Migration 0003 dropped three indexes that every vote, chosen mark or result row paid for (the
foreign keys' own ``group`` indexes and ``(group, chosen, instance)``), on the claim that the
unique ``(group, instance)`` and ``(group, request id)`` indexes serve every query. This test holds
the claim: it runs the real queries (storage recovery and catch-up, the stored-result look-up,
pruning, the log API and the dashboard), asks SQLite for each one's plan, and fails on a full scan
of either table, which on a node with a million instances is seconds per query.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consensus.core.ballot import Ballot
from consensus.core.messages import ChosenEntry, Command
from consensus.core.ready import AcceptedWrite, Persist, Ready
from consensus.dashboard.snapshot import load_latest_commits
from consensus.models import Instance, RequestResult
from consensus.runtime.apply import Applier
from consensus.storage.pruning import prune_cutoff
from consensus.storage.store import DjangoStorage

pytestmark = pytest.mark.django_db

sqlite_plans = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="reads SQLite's EXPLAIN QUERY PLAN output"
)

TABLES = ("consensus_instance", "consensus_requestresult")
GROUP = 7


def plan(sql: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return [row[-1] for row in cursor.fetchall()]


def full_scans(sql: str) -> list[str]:
    """The plan's steps that read a whole log or results table ('SCAN t', not 'SEARCH t USING
    INDEX', and not a scan of a covering index that a join probes)."""
    return [
        step
        for step in plan(sql)
        if any(step == f"SCAN {table}" or step.startswith(f"SCAN {table} ") for table in TABLES)
        and "INDEX" not in step
    ]


def make_log(instances: int = 50) -> None:
    storage = DjangoStorage()
    storage.ensure_groups([GROUP])
    ballot = Ballot(1, 1)
    accepted = tuple(
        AcceptedWrite(i, ballot, (Command(f"r{i}", "{}"),)) for i in range(1, instances + 1)
    )
    chosen = tuple(ChosenEntry(w.instance, w.value) for w in accepted[:-5])
    storage.persist([Ready(GROUP, Persist(accepted=accepted, chosen=chosen), ())])
    created = timezone.now() - timedelta(days=2)
    RequestResult.objects.bulk_create(
        RequestResult(group_id=GROUP, request_id=f"r{i}", instance=i, result="{}")
        for i in range(1, instances + 1)
    )
    RequestResult.objects.filter(instance__lte=20).update(created_at=created)


def index_columns(table: str) -> set[tuple[str, ...]]:
    """The column lists of the table's indexes and unique constraints, primary key aside."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        tuple(info["columns"])
        for info in constraints.values()
        if (info["index"] or info["unique"]) and not info["primary_key"]
    }


def test_the_log_tables_keep_only_the_indexes_their_reads_use() -> None:
    """On SQLite and PostgreSQL alike: migration 0003 drops the foreign keys' indexes by the
    names Django gave them; a wrong name would be skipped silently (IF EXISTS), but not here."""
    assert index_columns("consensus_instance") == {("group_id", "instance")}
    assert index_columns("consensus_requestresult") == {
        ("group_id", "request_id"),
        ("group_id", "instance"),
    }


@sqlite_plans
def test_the_scan_detector_sees_a_full_scan() -> None:
    """The negative control: a filter no index covers is reported."""
    make_log()
    query = Instance.objects.filter(chosen=True, ballot_node=1)
    assert full_scans(str(query.query)) == ["SCAN consensus_instance"]


@sqlite_plans
def test_log_and_result_reads_search_an_index() -> None:
    make_log()
    storage = DjangoStorage()
    applier = Applier({}, "default")
    with CaptureQueriesContext(connection) as queries:
        storage.load(GROUP)
        storage.chosen_values(GROUP, 3, 30)
        applier.lookup(GROUP, "r9")
        prune_cutoff(GROUP, ttl_seconds=86_400, max_results=10, max_rows=5)
        load_latest_commits("default", GROUP, applied=40, limit=20)
        list(Instance.objects.filter(group_id=GROUP, chosen=True, instance__gt=10)[:5])  # log API
    reads = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT") and any(table in query["sql"] for table in TABLES)
    ]
    assert len(reads) >= 8, reads  # the calls above really read both tables
    assert {sql: full_scans(sql) for sql in reads if full_scans(sql)} == {}
