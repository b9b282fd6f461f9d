"""The long run, not in the default suite: ``pytest --soak=600 tests/jepsen -k soak -s``.

Every fault type, at random, for SECONDS on a 3-node and again on a 5-node cluster; the report
(ops, failures, indeterminate ops, faults injected, time to check, verdict) is printed.
"""

from __future__ import annotations

import os

import pytest

from .nemesis import FAULTS
from .workloads import JepsenRun, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("nodes", [3, 5])
def test_soak(cluster_factory, soak_seconds: float, nodes: int) -> None:
    seed = int(os.environ["JEPSEN_SEED"]) if os.environ.get("JEPSEN_SEED") else None
    settings = Settings(
        nodes=nodes,
        duration=soak_seconds,
        clients=8 if nodes == 3 else 10,
        keys_per_group=3,
        bank_clients=3,
        faults=FAULTS,
        quiet=(1.0, 4.0),
        fault_duration=(1.0, 6.0),
        seed=seed,
    )
    report = JepsenRun(settings, cluster_factory).run()
    print()
    print(report.render())
    assert report.valid, report.render()


@pytest.mark.parametrize("unsafe", ["local-reads", "acknowledge-before-commit"])
def test_soak_negative_controls(cluster_factory, soak_seconds: float, unsafe: str) -> None:
    """The random workload with deliberately unsafe settings: the checks must fail."""
    options = {"reads": "local"} if unsafe == "local-reads" else {"lying_clients": 2}
    settings = Settings(
        nodes=3,
        duration=min(soak_seconds, 30),
        keys_per_group=1,
        bank_clients=0,
        faults=("partition-halves", "partition-leader"),
        quiet=(0.2, 0.5),
        fault_duration=(2.0, 4.0),
        **options,  # type: ignore[arg-type]
    )
    report = JepsenRun(settings, cluster_factory).run()
    print()
    print(report.render())
    assert report.verdict == "INVALID", report.render()
