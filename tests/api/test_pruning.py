"""Pruning of exactly-once results: bounded by age and by number per group."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from consensus.models import Group, RequestResult
from consensus.storage.pruning import prune_request_results

pytestmark = pytest.mark.django_db


def make_results(group_id: int, count: int, age_seconds: float = 0) -> None:
    group, _ = Group.objects.get_or_create(group_id=group_id, defaults={"state_machine": "kv"})
    RequestResult.objects.bulk_create(
        RequestResult(group=group, request_id=f"g{group_id}-{n}", instance=n, result="null")
        for n in range(count)
    )
    if age_seconds:
        RequestResult.objects.filter(group=group).update(
            created_at=timezone.now() - timedelta(seconds=age_seconds)
        )


def test_old_results_are_pruned() -> None:
    make_results(1, 5, age_seconds=7200)
    make_results(2, 3)
    report = prune_request_results(ttl_seconds=3600, max_results=None, chunk=2)
    assert report.expired == 5 and report.over_limit == 0
    assert RequestResult.objects.filter(group_id=1).count() == 0
    assert RequestResult.objects.filter(group_id=2).count() == 3


def test_only_the_newest_results_per_group_are_kept() -> None:
    make_results(1, 10)
    make_results(2, 2)
    report = prune_request_results(ttl_seconds=None, max_results=3)
    assert report.over_limit == 7
    kept = RequestResult.objects.filter(group_id=1).values_list("request_id", flat=True)
    assert sorted(kept) == ["g1-7", "g1-8", "g1-9"]
    assert RequestResult.objects.filter(group_id=2).count() == 2


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        prune_request_results(ttl_seconds=-1, max_results=None)


def test_command(settings) -> None:
    make_results(1, 4, age_seconds=100)
    out = io.StringIO()
    call_command("pruneresults", "--ttl", "-1", "--max", "1", stdout=out)
    assert "deleted 3 request results" in out.getvalue()
    call_command("pruneresults", "--ttl", "10", stdout=out)
    assert RequestResult.objects.count() == 0
