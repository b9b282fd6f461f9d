"""Printing results: a fixed-width table for people, JSON for scripts."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

COLUMNS = (
    "target",
    "groups",
    "clients",
    "value_size",
    "read_fraction",
    "ops_per_s",
    "vs_etcd",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "errors",
    "cpu_ms_per_op",
)


def median_of_runs(runs: Sequence[dict[str, object]]) -> dict[str, object]:
    """One row from repeated runs of one configuration: the median of every number."""
    row = dict(runs[0])
    for column in ("ops", "ops_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors"):
        row[column] = statistics.median(float(run[column]) for run in runs)  # type: ignore[arg-type]
    cpu = [run.get("cpu_ms_per_op") for run in runs]
    row["cpu_ms_per_op"] = (
        None if None in cpu else statistics.median(float(value) for value in cpu)  # type: ignore[arg-type]
    )
    row["runs"] = len(runs)
    return row


def compare_with_etcd(
    rows: Sequence[dict[str, object]], etcd: str = "etcd"
) -> list[dict[str, object]]:
    """The rows, each of this service's with ``vs_etcd``: its ops/s divided by etcd's in the same
    configuration (groups, clients, value size, reads) of the same run, or None where etcd did
    not run it. The ratio within one run is the figure to trust on a noisy machine."""

    def configuration(row: dict[str, object]) -> tuple[object, ...]:
        return (row.get("groups"), row["clients"], row.get("value_size"), row["read_fraction"])

    baselines = {configuration(row): row for row in rows if row["target"] == etcd}
    compared = []
    for row in rows:
        baseline = baselines.get(configuration(row)) if row["target"] != etcd else None
        ratio = None
        if baseline is not None and float(baseline["ops_per_s"]) > 0:  # type: ignore[arg-type]
            ratio = round(float(row["ops_per_s"]) / float(baseline["ops_per_s"]), 2)  # type: ignore[arg-type]
        compared.append({**row, "vs_etcd": ratio})
    return compared


def table(rows: Sequence[dict[str, object]]) -> str:
    widths = {c: max(len(c), *(len(_fmt(row.get(c))) for row in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(_fmt(row.get(c)).rjust(widths[c]) for c in COLUMNS) for row in rows]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 100 else f"{value:.2f}"
    return str(value)
