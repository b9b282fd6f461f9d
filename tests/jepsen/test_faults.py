"""Short Jepsen runs for the default suite (about a minute in all): live 3- and 5-node clusters,
every fault type, checked histories; and negative controls that the checks must catch.

``JEPSEN_SEED=n`` replays a run's random choices (client ops, fault schedule); the seed of every
run is in its printed report. The long run is ``pytest --soak=SECONDS tests/jepsen``.
"""

from __future__ import annotations

import os
import random

import pytest

from .checker import INVALID, check
from .history import OK, Op
from .nemesis import FAULTS
from .workloads import JepsenRun, Settings

pytestmark = pytest.mark.e2e


def seed() -> int | None:
    return int(os.environ["JEPSEN_SEED"]) if os.environ.get("JEPSEN_SEED") else None


def stale_read_mutation(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """The same history with one read corrupted into a stale read: it returns the value of a
    write W1 although another acknowledged write W2 began after W1 ended and ended before the
    read began. (Values are unique, so no linearization can explain it.)"""
    writes = [op for op in ops if op.acknowledged_write and op.f in ("put", "cas")]
    acknowledged = [op for op in ops if op.acknowledged_write]
    reads = [op for op in ops if op.type == OK and op.f == "get"]
    rng.shuffle(reads)
    for read in reads:
        for w2 in acknowledged:
            if w2.key != read.key or w2.ret is None or w2.ret >= read.call:
                continue
            for w1 in writes:
                if w1.key == read.key and w1.ret is not None and w1.ret < w2.call:
                    mutated = [
                        (Op(**{**vars(op), "output": w1.value}) if op is read else op) for op in ops
                    ]
                    return mutated
    return None


def run(cluster_factory, **options) -> JepsenRun:
    settings = Settings(seed=seed(), **options)
    jepsen = JepsenRun(settings, cluster_factory)
    report = jepsen.run()
    print(report.render())
    return jepsen


# Between them, the two short runs inject every fault type at least once.
THREE_NODE_FAULTS = (
    "kill-leader",
    "pause-leader",
    "partition-halves",
    "partition-one-way",
    "slow-node",
    "restart-all",
)
FIVE_NODE_FAULTS = tuple(f for f in FAULTS if f not in THREE_NODE_FAULTS)


def test_three_nodes_under_faults(cluster_factory) -> None:
    jepsen = run(
        cluster_factory,
        nodes=3,
        duration=13,
        faults=THREE_NODE_FAULTS,
        schedule="cycle",
        quiet=(0.2, 0.6),
        fault_duration=(0.8, 1.5),
    )
    report = jepsen.report
    assert report.valid, report.render()
    assert set(report.faults) == set(THREE_NODE_FAULTS), report.faults
    assert report.ops[OK] > 200 and report.transfers > 5
    # The harness can fail: the same real history with one read made stale is caught.
    mutated = stale_read_mutation(jepsen.history.snapshot(), random.Random(1))
    assert mutated is not None
    assert check(mutated).verdict == INVALID


def test_five_nodes_under_faults(cluster_factory) -> None:
    report = run(
        cluster_factory,
        nodes=5,
        duration=8,
        clients=8,
        faults=FIVE_NODE_FAULTS,
        schedule="cycle",
        quiet=(0.2, 0.6),
        fault_duration=(0.8, 1.5),
    ).report
    assert report.valid, report.render()
    assert set(report.faults) == set(FIVE_NODE_FAULTS), report.faults


def test_negative_control_local_reads_from_a_partitioned_minority(cluster_factory) -> None:
    """``?consistency=local`` reads are allowed to be stale; with a node cut off from the
    majority while writes go on, the checker must say the history is not linearizable."""
    report = run(
        cluster_factory,
        nodes=3,
        duration=4,
        keys_per_group=1,
        bank_clients=0,
        reads="local",
        faults=("partition-halves",),
        quiet=(0.2, 0.2),
        fault_duration=(3.5, 3.5),
    ).report
    assert report.linearizability is not None
    assert report.linearizability.verdict == INVALID, report.render()
    assert not report.lost_writes and not report.agreement  # only the reads were unsafe


def test_negative_control_acknowledge_before_commit(cluster_factory) -> None:
    """Clients that acknowledge a write before the cluster committed it (while a node is cut
    off, and writes sent to it cannot commit) must be caught."""
    report = run(
        cluster_factory,
        nodes=3,
        duration=4,
        keys_per_group=1,
        bank_clients=0,
        lying_clients=2,
        api="commands",  # the honest clients use the commands endpoint here, for coverage
        faults=("partition-halves",),
        quiet=(0.2, 0.2),
        fault_duration=(3.5, 3.5),
    ).report
    assert report.verdict == "INVALID", report.render()
