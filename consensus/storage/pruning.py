"""Bounding the exactly-once table: ``RequestResult`` rows are kept for a time and a number.

A row holds the first result of a client request id, so a retry gets it back instead of applying
the command twice. Rows cannot be kept forever; once a row is pruned, a retry of that request id
is applied again. That is the documented bound: retries are exactly-once within
``PAXOS_REQUEST_RESULT_TTL`` seconds and the newest ``PAXOS_REQUEST_RESULT_MAX`` results per group.

Caution for callers (the runtime): the applier also consults these rows when a duplicate of a
request id is *chosen* (two copies in the log). Each node prunes its own table, on its own clock,
so a late duplicate could be treated as new on a node that pruned and as a duplicate on one that
did not. Keep the TTL far above any retry window and any node's apply lag (hours, not seconds),
or make the decision deterministic through the log (see the API issue's closing note).

Deletes run in small chunks, each its own short transaction, so the node's writer thread (which
shares the database, and on SQLite its write lock) is never held up for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from consensus.models import RequestResult

CHUNK = 5000


@dataclass(frozen=True, slots=True)
class PruneReport:
    expired: int
    over_limit: int

    @property
    def deleted(self) -> int:
        return self.expired + self.over_limit


def prune_request_results(
    *,
    ttl_seconds: float | None,
    max_results: int | None,
    using: str = "default",
    now: datetime | None = None,
    chunk: int = CHUNK,
) -> PruneReport:
    """Delete results older than ``ttl_seconds`` and, per group, all but the newest
    ``max_results`` (by insertion order, which is apply order). ``None`` disables a bound."""
    if ttl_seconds is not None and ttl_seconds < 0:
        raise ValueError("ttl_seconds must be >= 0")
    if max_results is not None and max_results < 0:
        raise ValueError("max_results must be >= 0")
    rows = RequestResult.objects.using(using)
    expired = 0
    if ttl_seconds is not None:
        cutoff = (now or timezone.now()) - timedelta(seconds=ttl_seconds)
        expired = _delete_in_chunks(rows.filter(created_at__lt=cutoff), using, chunk)
    over_limit = 0
    if max_results is not None:
        group_ids = rows.values_list("group_id", flat=True).distinct()
        for group_id in list(group_ids):
            newest = rows.filter(group_id=group_id).order_by("-id")
            boundary = newest.values_list("id", flat=True)[max_results : max_results + 1]
            last_kept_out = next(iter(boundary), None)
            if last_kept_out is not None:
                over_limit += _delete_in_chunks(
                    rows.filter(group_id=group_id, id__lte=last_kept_out), using, chunk
                )
    return PruneReport(expired=expired, over_limit=over_limit)


def _delete_in_chunks(queryset, using: str, chunk: int) -> int:  # type: ignore[no-untyped-def]
    deleted = 0
    while True:
        ids = list(queryset.order_by("id").values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        with transaction.atomic(using=using):
            count, _ = RequestResult.objects.using(using).filter(id__in=ids).delete()
        deleted += count
