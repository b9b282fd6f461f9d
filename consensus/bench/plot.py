"""Drawing a benchmark's rows: ops/s against each dimension that the run varied.

A run sweeps up to three dimensions at once (``--clients``, ``--groups``, ``--value-size``). Each
one that took more than one value gets a panel with that dimension on the x axis; every other
combination (target and the other dimensions' values) is a line of its own, so a full cross
product stays readable and nothing is averaged away. matplotlib's Agg backend draws without a
display, so this works on a headless server.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server: draw into files only

from matplotlib import pyplot  # noqa: E402 - after the backend is chosen

__all__ = ["DIMENSIONS", "panels", "write_plot"]

DIMENSIONS = {"clients": "clients", "groups": "groups", "value_size": "value size (bytes)"}
"""Row column -> axis label, in the order the panels appear."""

Row = dict[str, object]


def panels(rows: Sequence[Row]) -> list[str]:
    """The dimensions that took more than one value (``clients`` if none did)."""
    varied = [name for name in DIMENSIONS if len({row[name] for row in rows}) > 1]
    return varied or ["clients"]


def lines(rows: Sequence[Row], dimension: str) -> dict[str, list[tuple[float, float]]]:
    """``label -> [(x, ops/s), ...]`` sorted by x: one line per target and combination of the
    other varied dimensions."""
    others = [name for name in panels(rows) if name != dimension]
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        label = ", ".join([str(row["target"]), *(_describe(name, row[name]) for name in others)])
        series.setdefault(label, []).append(
            (float(row[dimension]), float(row["ops_per_s"]))  # type: ignore[arg-type]
        )
    return {label: sorted(points) for label, points in series.items()}


def write_plot(rows: Sequence[Row], path: str | Path, title: str = "") -> None:
    """Write a PNG of ops/s against every varied dimension of ``rows`` to ``path``."""
    names = panels(rows)
    figure, axes = pyplot.subplots(
        1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False, layout="constrained"
    )
    try:
        for axis, dimension in zip(axes[0], names, strict=True):
            for label, points in lines(rows, dimension).items():
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", label=label)
            values = sorted({float(row[dimension]) for row in rows})  # type: ignore[arg-type]
            if dimension != "groups" and len(values) > 1 and values[-1] / values[0] >= 8:
                axis.set_xscale("log", base=2)
            axis.set_xticks(values, [f"{value:g}" for value in values])
            axis.set_xlabel(DIMENSIONS[dimension])
            axis.set_ylabel("operations per second")
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize="small")
        if title:  # about 9 characters of the default font per inch of width
            figure.suptitle(textwrap.fill(title, width=int(9 * 5.5 * len(names))))
        figure.savefig(path, dpi=110)
    finally:
        pyplot.close(figure)


def _describe(dimension: str, value: object) -> str:
    if dimension == "value_size":
        return f"{value} B"
    noun = "client" if dimension == "clients" else "group"
    return f"{value} {noun}{'' if value == 1 else 's'}"
