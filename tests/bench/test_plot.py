"""The benchmark plot: which panels and lines a sweep gets, and that a real image is written."""

from __future__ import annotations

import struct
from pathlib import Path

from consensus.bench.plot import lines, panels, write_plot


def row(target: str, clients: int, groups: int, value_size: int, ops: float) -> dict[str, object]:
    return {
        "target": target,
        "clients": clients,
        "groups": groups,
        "value_size": value_size,
        "ops_per_s": ops,
    }


SWEEP = [
    row(target, clients, groups, 100, ops)
    for target, scale in (("paxos-rest", 1.0), ("paxos-client", 3.0))
    for clients in (128, 1, 32)  # out of order on purpose: lines are sorted by x
    for groups, ops in ((1, 100.0 * clients * scale), (4, 50.0 * clients * scale))
]


def test_a_panel_for_each_dimension_that_varied() -> None:
    assert panels(SWEEP) == ["clients", "groups"]
    assert panels([row("paxos-rest", 1, 1, 100, 5.0)]) == ["clients"]  # nothing varied
    sizes = [row("paxos-rest", 8, 1, size, 5.0) for size in (100, 1000)]
    assert panels(sizes) == ["value_size"]


def test_one_line_per_target_and_combination_of_the_other_dimensions() -> None:
    by_clients = lines(SWEEP, "clients")
    assert set(by_clients) == {
        "paxos-rest, 1 group",
        "paxos-rest, 4 groups",
        "paxos-client, 1 group",
        "paxos-client, 4 groups",
    }
    assert by_clients["paxos-client, 4 groups"] == [(1, 150.0), (32, 4800.0), (128, 19200.0)]
    by_groups = lines(SWEEP, "groups")
    assert by_groups["paxos-rest, 32 clients"] == [(1, 3200.0), (4, 1600.0)]


def test_write_plot_draws_a_png_with_a_panel_per_dimension(tmp_path: Path) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    write_plot([row("paxos-rest", c, 1, 100, 10.0 * c) for c in (1, 8)], one, title="t")
    write_plot(SWEEP, two)
    widths = []
    for path in (one, two):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, _height = struct.unpack(">II", data[16:24])  # the IHDR chunk
        widths.append(width)
    assert widths[1] == 2 * widths[0]  # two panels side by side
