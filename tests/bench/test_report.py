"""The result table: this service's rows are compared with etcd's row of the same configuration."""

from __future__ import annotations

from consensus.bench.report import compare_with_etcd, table


def row(target: str, clients: int, ops: float, groups: int = 1) -> dict[str, object]:
    return {
        "target": target,
        "groups": groups,
        "clients": clients,
        "value_size": 100,
        "read_fraction": 0.0,
        "ops_per_s": ops,
    }


def test_each_row_is_divided_by_etcds_row_of_the_same_configuration() -> None:
    rows = [
        row("paxos-rest", 1, 100.0),
        row("paxos-client", 1, 150.0),
        row("etcd", 1, 400.0),
        row("paxos-rest", 128, 3000.0),
        row("etcd", 128, 2000.0),
        row("paxos-rest", 128, 900.0, groups=4),  # etcd has no groups run of this shape
    ]
    ratios = [r["vs_etcd"] for r in compare_with_etcd(rows)]
    assert ratios == [0.25, 0.38, None, 1.5, None, None]
    lines = table(compare_with_etcd(rows)).splitlines()
    assert "vs_etcd" in lines[0].split()
    assert lines[4].split()[lines[0].split().index("vs_etcd")] == "1.50"


def test_without_etcd_nothing_is_compared() -> None:
    rows = compare_with_etcd([row("paxos-rest", 1, 100.0), row("etcd", 1, 0.0)])
    assert [r["vs_etcd"] for r in rows] == [None, None]  # no division by a failed etcd run
