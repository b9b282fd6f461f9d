"""Bounding the exactly-once table: ``RequestResult`` rows are kept for a time and a number.

A row holds the first result of a client request id, so a retry gets it back instead of applying
the command twice; once a row is pruned, a retry of that request id is applied again. That is the
documented bound: retries are exactly-once within ``PAXOS_REQUEST_RESULT_TTL`` seconds and for
the newest ``PAXOS_REQUEST_RESULT_MAX`` results per group.

Pruning goes through the log. The applier also consults these rows when one request id is chosen
twice (a retry that raced with its original), so every node must prune at the same point of the
log or nodes would disagree on whether a late duplicate is new. The leader therefore computes a
cutoff instance (``prune_cutoff``, on its own clock) and proposes it as a reserved marker
command; every node deletes the rows below that cutoff when it applies the marker
(``prune_before``), in the apply transaction, at the same position of the log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max, Min
from django.utils import timezone

from consensus.models import RequestResult


def prune_cutoff(
    group_id: int,
    *,
    ttl_seconds: float | None,
    max_results: int | None,
    using: str = "default",
    now: datetime | None = None,
) -> int | None:
    """The instance below which this group's results may go: older than ``ttl_seconds`` or
    beyond the newest ``max_results``. None when there is nothing to prune."""
    rows = RequestResult.objects.using(using).filter(group_id=group_id)
    cutoff = 0
    if ttl_seconds is not None:
        horizon = (now or timezone.now()) - timedelta(seconds=ttl_seconds)
        oldest_kept = rows.filter(created_at__gte=horizon).aggregate(first=Min("instance"))
        if oldest_kept["first"] is not None:
            cutoff = oldest_kept["first"]
        else:
            newest = rows.aggregate(last=Max("instance"))["last"]
            cutoff = newest + 1 if newest is not None else 0
    if max_results is not None:
        newest_first = rows.order_by("-instance").values_list("instance", flat=True)
        boundary = newest_first[max_results : max_results + 1]
        beyond = next(iter(boundary), None)
        if beyond is not None:
            cutoff = max(cutoff, beyond + 1)
    if cutoff <= 0 or not rows.filter(instance__lt=cutoff).exists():
        return None
    return cutoff


def prune_before(group_id: int, cutoff: int, using: str = "default") -> int:
    """Delete the results of instances below ``cutoff`` (inside the caller's transaction)."""
    deleted, _ = (
        RequestResult.objects.using(using).filter(group_id=group_id, instance__lt=cutoff).delete()
    )
    return deleted
