"""Pruning of exactly-once results: the cutoff the leader proposes, and the deletion every node
performs when the marker is applied."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consensus.models import Group, RequestResult
from consensus.storage.pruning import prune_before, prune_cutoff
from tests.fixtures.logs import consensus_logs

pytestmark = pytest.mark.django_db


def make_results(group_id: int, instances: range, age_seconds: float = 0) -> None:
    group, _ = Group.objects.get_or_create(group_id=group_id, defaults={"state_machine": "kv"})
    RequestResult.objects.bulk_create(
        RequestResult(group=group, request_id=f"g{group_id}-{n}", instance=n, result="null")
        for n in instances
    )
    if age_seconds:
        RequestResult.objects.filter(group=group, instance__in=list(instances)).update(
            created_at=timezone.now() - timedelta(seconds=age_seconds)
        )


def test_cutoff_by_age_keeps_the_young_results() -> None:
    make_results(1, range(1, 11), age_seconds=3600)
    make_results(1, range(11, 16))
    assert prune_cutoff(1, ttl_seconds=60, max_results=None) == 11
    assert prune_cutoff(1, ttl_seconds=7200, max_results=None) is None


def test_cutoff_when_every_result_is_old() -> None:
    make_results(1, range(1, 6), age_seconds=3600)
    assert prune_cutoff(1, ttl_seconds=60, max_results=None) == 6


def test_cutoff_by_number_keeps_the_newest() -> None:
    make_results(1, range(1, 21))
    make_results(2, range(1, 4))
    assert prune_cutoff(1, ttl_seconds=None, max_results=5) == 16
    assert prune_cutoff(2, ttl_seconds=None, max_results=5) is None


def test_prune_before_deletes_only_older_instances_of_that_group() -> None:
    make_results(1, range(1, 11))
    make_results(2, range(1, 11))
    assert prune_before(1, 6) == 5
    assert sorted(RequestResult.objects.filter(group_id=1).values_list("instance", flat=True)) == [
        6,
        7,
        8,
        9,
        10,
    ]
    assert RequestResult.objects.filter(group_id=2).count() == 10


@pytest.mark.parametrize("young_from", [2, 7, 30, 31, 59, 60])
def test_cutoff_by_age_searches_instances_with_gaps_and_many_rows(young_from: int) -> None:
    """Several results per instance, instances with gaps (no-ops, markers): the binary search
    over instances still finds the first instance with a young result."""
    group, _ = Group.objects.get_or_create(group_id=3, defaults={"state_machine": "kv"})
    instances = [n for n in range(1, 61) if n % 4 != 0]
    old = timezone.now() - timedelta(hours=2)
    rows = [
        RequestResult(group=group, request_id=f"r{n}-{k}", instance=n, result="null")
        for n in instances
        for k in range(3)
    ]
    RequestResult.objects.bulk_create(rows)
    RequestResult.objects.filter(group=group, instance__lt=young_from).update(created_at=old)
    expected = next((n for n in instances if n >= young_from), instances[-1] + 1)
    cutoff = prune_cutoff(3, ttl_seconds=60, max_results=None)
    assert cutoff == (None if expected == instances[0] else expected)


def test_cutoff_deletes_a_bounded_number_of_rows_per_step() -> None:
    """``max_rows`` caps one step (whole instances); the steps together reach the full cutoff."""
    make_results(1, range(1, 101), age_seconds=3600)
    make_results(1, range(101, 111))
    assert prune_cutoff(1, ttl_seconds=60, max_results=None) == 101
    steps = []
    while (cutoff := prune_cutoff(1, ttl_seconds=60, max_results=None, max_rows=30)) is not None:
        steps.append(cutoff)
        assert prune_before(1, cutoff) <= 30
    assert steps == [31, 61, 91, 101]
    assert RequestResult.objects.filter(group_id=1).count() == 10


def test_a_failed_look_for_results_waits_for_the_next_round(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error while looking for the cutoff ended the pruning task for good (until a
    restart): the results table then grew without bound (a review)."""
    import asyncio
    from types import SimpleNamespace

    from consensus.runtime import pruning

    calls: list[int] = []
    proposed: list[str] = []

    def cutoff(group_id: int, **_: object) -> int:
        calls.append(group_id)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return 7

    async def submit(group_id: int, command: str, request_id: str) -> None:
        proposed.append(command)
        raise asyncio.CancelledError  # one proposal is all this test needs

    monkeypatch.setattr(pruning, "prune_cutoff", cutoff)
    replica = SimpleNamespace(is_leader=lambda: True)
    node = SimpleNamespace(
        node_id=1, replicas={1: replica}, storage=SimpleNamespace(using="default"), submit=submit
    )
    task = pruning.ResultPruning(node, ttl=1.0, most=None, interval=0.01)  # type: ignore[arg-type]
    with consensus_logs(caplog), pytest.raises(asyncio.CancelledError):
        asyncio.run(task.run())
    assert calls == [1, 1] and proposed == ["7"]
    assert "could not look for results to prune: the database went away" in caplog.text
