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

from django.db.models import QuerySet
from django.utils import timezone

from consensus.models import RequestResult


def prune_cutoff(
    group_id: int,
    *,
    ttl_seconds: float | None,
    max_results: int | None,
    using: str = "default",
    now: datetime | None = None,
    max_rows: int | None = None,
) -> int | None:
    """The instance below which this group's results may go: older than ``ttl_seconds`` or
    beyond the newest ``max_results``. None when there is nothing to prune.

    With ``max_rows`` the cutoff stops short of deleting much more than that many rows (whole
    instances): every node deletes them in an apply transaction, and a deletion of hundreds of
    thousands of rows stalled commits for seconds. The caller prunes again soon after."""
    rows = RequestResult.objects.using(using).filter(group_id=group_id)
    cutoff = 0
    if ttl_seconds is not None:
        horizon = (now or timezone.now()) - timedelta(seconds=ttl_seconds)
        cutoff = _first_instance_since(rows, horizon)
    if max_results is not None:
        newest_first = rows.order_by("-instance").values_list("instance", flat=True)
        boundary = newest_first[max_results : max_results + 1]
        beyond = next(iter(boundary), None)
        if beyond is not None:
            cutoff = max(cutoff, beyond + 1)
    if max_rows is not None and cutoff > 0:
        oldest_first = rows.order_by("instance").values_list("instance", flat=True)
        limit = next(iter(oldest_first[max_rows : max_rows + 1]), None)
        if limit is not None:
            cutoff = min(cutoff, max(limit, oldest_first[0] + 1))
    if cutoff <= 0 or not rows.filter(instance__lt=cutoff).exists():
        return None
    return cutoff


def _first_instance_since(rows: QuerySet[RequestResult], horizon: datetime) -> int:
    """The first instance whose results are at least as new as ``horizon`` (one past the last
    instance when all are older; 0 when there are none).

    Results are written in log order when they are applied, so ``created_at`` grows with the
    instance: a binary search over the ``(group, instance)`` index needs a few dozen point
    queries, where filtering on ``created_at`` would scan the whole table."""

    def first_at_or_after(instance: int) -> tuple[int, datetime] | None:
        return (
            rows.filter(instance__gte=instance)
            .order_by("instance")
            .values_list("instance", "created_at")
            .first()
        )

    first = first_at_or_after(0)
    last = rows.order_by("-instance").values_list("instance", "created_at").first()
    if first is None or last is None:
        return 0
    if last[1] < horizon:
        return last[0] + 1
    low, high = first[0], last[0]  # the first result at or after ``high`` is new enough
    while low < high:
        middle = (low + high) // 2
        found = first_at_or_after(middle)
        if found is not None and found[1] >= horizon:
            high = middle
        else:
            low = middle + 1
    found = first_at_or_after(low)
    return found[0] if found is not None else last[0] + 1


def prune_before(group_id: int, cutoff: int, using: str = "default") -> int:
    """Delete the results of instances below ``cutoff`` (inside the caller's transaction)."""
    deleted, _ = (
        RequestResult.objects.using(using).filter(group_id=group_id, instance__lt=cutoff).delete()
    )
    return deleted
