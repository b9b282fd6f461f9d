"""Short Jepsen runs for the default suite (about a minute in all): live 3- and 5-node clusters,
every fault type, checked histories; and negative controls that the checks must catch.

``JEPSEN_SEED=n`` replays a run's random choices (client ops, fault schedule); the seed of every
run is in its printed report. The long run is ``pytest --soak=SECONDS tests/jepsen``.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.fixtures.nemesis import ProxyNetwork

from .checker import INVALID, check
from .client import Client, LyingClient
from .history import OK, History, Op
from .nemesis import FAULTS
from .workloads import JepsenRun, Report, Settings

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
    "wipe-random",
)
FIVE_NODE_FAULTS = tuple(f for f in FAULTS if f not in THREE_NODE_FAULTS)


def assert_ran_as_planned(report: Report, faults: tuple[str, ...], min_ok: int) -> None:
    """A valid verdict counts only if the run did what it claims: every fault type applied
    (``injected`` counts applied faults only; a harness error makes the verdict invalid), a
    database really deleted and rebuilt where wipes are scheduled, every kind of op and bank
    transfers completed, and the nodes' result digests compared."""
    assert report.valid, report.render()
    assert set(report.faults) == set(faults), report.render()
    if "wipe-random" in faults:
        assert report.rebuilt > 0, report.render()  # a wiped node said it rebuilt
    assert report.ops[OK] > min_ok, report.render()
    assert all(report.ok_by_f[f] > 0 for f in ("get", "put", "cas", "delete")), report.ok_by_f
    assert report.transfers > 0, report.render()
    assert report.windows_compared > 0, report.render()  # digests compared (and agreed)


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
    assert_ran_as_planned(report, THREE_NODE_FAULTS, min_ok=100)
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
    assert_ran_as_planned(report, FIVE_NODE_FAULTS, min_ok=100)


def test_stream_clients_under_faults(cluster_factory) -> None:
    """The same checks with every op through the pipelined client stream (``/ws/client/``):
    submits without the stored-result look-up, linearizable queries, per-connection timeouts."""
    faults = ("kill-leader", "partition-halves", "pause-leader")
    report = run(
        cluster_factory,
        nodes=3,
        duration=8,
        api="stream",
        faults=faults,
        schedule="cycle",
        quiet=(0.2, 0.6),
        fault_duration=(0.8, 1.5),
    ).report
    assert_ran_as_planned(report, faults, min_ok=50)


def record(history: History, client: Client, process: str, f: str, node: int, key: str, **args):
    """One op on group 1 through ``client``, recorded in ``history``."""
    op = history.invoke(process, f, f"1/{key}", args.get("value"), node=node)
    reply = client.call(f, node, 1, key, request_id=f"{process}-{op.index}", **args)
    return history.complete(op, reply.type, reply.output, reply.error)


def test_negative_controls_are_caught(cluster_factory) -> None:
    """The harness can fail on a live cluster, deterministically: with one node cut off from
    the majority,

    - ``?consistency=local`` reads from it (allowed to be stale), over REST and over the client
      stream, return a value older than a write the majority acknowledged before the read began;
    - a client that acknowledges a write before the cluster committed it (``LyingClient``,
      writing through the cut-off node, where nothing can commit) is followed by a read that
      does not see the "acknowledged" write.

    The checker must reject both keys. (``pytest --soak`` also runs the whole random workload
    with these unsafe settings: test_soak.py.)"""
    with ProxyNetwork([1, 2, 3]) as network:
        cluster = cluster_factory(
            start=False, size=3, groups=(1,), request_timeout=2.0, link_ports=network.link_ports
        )
        network.set_targets({n: node.port for n, node in cluster.nodes.items()})
        cluster.start()
        leader = cluster.wait_for_leader(1)
        cut_off = next(n for n in cluster.nodes if n != leader)
        history = History()
        honest, local, liar = Client(cluster), Client(cluster, reads="local"), LyingClient(cluster)
        commands = Client(cluster, api="commands")  # the other transport, for coverage
        assert record(history, honest, "c0", "put", leader, "stale", value="stale-1").type == OK
        assert record(history, commands, "c3", "put", leader, "lie", value="lie-1").type == OK
        deadline = time.monotonic() + 10  # the cut-off node has applied the first writes
        while record(history, local, "c1", "get", cut_off, "stale").output != "stale-1":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        network.isolate(cut_off)
        try:
            assert record(history, honest, "c0", "put", leader, "stale", value="stale-2").type == OK
            stale = record(history, local, "c1", "get", cut_off, "stale")
            assert stale.output == "stale-1", stale.describe()
            stream_local = Client(cluster, api="stream", reads="local")  # the same, streamed
            streamed = record(history, stream_local, "c4", "get", cut_off, "stale")
            assert streamed.output == "stale-1", streamed.describe()
            assert record(history, liar, "c2", "put", cut_off, "lie", value="lie-2").type == OK
            after = record(history, commands, "c3", "get", leader, "lie")
            assert after.output == "lie-1", after.describe()
        finally:
            network.heal()
            liar.join(timeout=10)
    result = check(history.snapshot())
    print(result.summary())
    assert result.verdict == INVALID
    assert {k.key for k in result.failures} == {"1/stale", "1/lie"}
