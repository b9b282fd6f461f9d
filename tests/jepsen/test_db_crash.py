"""The PostgreSQL server crashes under running nodes (``make test``'s PostgreSQL pass).

Every node's database is on a server of the test's own (``tests.fixtures.postgres_server``:
``initdb``, a free port of 127.0.0.1; the shared server on 5432 is never touched), which the
test stops immediately (SIGQUIT to the postmaster: no checkpoint, the WAL in the server's memory
is gone) and starts again on the same directory.

A node must not count a commit the server can take back: PostgreSQL commits without
``synchronous_commit`` (once made for turns without votes, ``DjangoStorage.relaxed_durability``)
were lost with such a crash while the node, which did not crash, went on from its memory: a
linearizable read answered 404 for an acknowledged put, and later commands were applied on top
of a state no replica had. Under load that cannot show: every node writes while the server is
down and exits (by design, ``docs/operations.md``, "A node whose database fails"), and restarts
from what its database kept. It shows in a quiet cluster, which a node lives through, read
before anything writes again. Both tests crash the server in one:

- ``test_acknowledged_writes_survive_a_database_crash``: writes, every node applies them, the
  server crashes and restarts, every node reads them back; then writes again, and no node
  stops (each replaces the connections the server closed before it uses them), with every
  acknowledged write intact;
- ``test_jepsen_under_database_crashes``: the Jepsen workload with ``db-crash`` faults (the
  clients hold, the server crashes in the quiet cluster, every key is read back on every node
  that lived through it) and ``kill-random``, checked as the other runs are.

The server keeps the WAL of commits that do not wait for it up to 10 s before writing it
(``wal_writer_delay``, 200 ms by default): the crash takes back every such commit since the last
one that waited, not those of the last 200 ms only. That changes nothing for commits that wait
(all of them, now), and makes a node that relies on one fail every time.

``JEPSEN_SEED=n`` replays the Jepsen run's random choices.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import Cluster
from tests.fixtures.postgres_server import PostgresServer, private_postgres

from .checker import check
from .client import Client
from .history import OK, History
from .nemesis import STORAGE_EXIT_LINES
from .workloads import JepsenRun, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SERVER_SETTINGS = {"wal_writer_delay": "10s", "fsync": "off"}
"""The strongest crash (``wal_writer_delay``: see the module docstring), and a quick restart:
the crash is the server's, not the machine's, so what the server wrote survives in the OS with
or without fsync (commits that wait for the WAL still wait for it to be written), while with
fsync a start after a crash first syncs the whole data directory (6-10 s on a slow disk)."""

NODE_ENV = {"PAXOS_STATE_CHECK_INTERVAL": "300"}
"""The default interval of state checks (the Jepsen runs' 0.5 s puts one in the log half a
second after the last write, a write that would end the quiet moment the crash needs)."""


@pytest.fixture
def db_server(tmp_path: Path) -> Iterator[PostgresServer]:
    with private_postgres(tmp_path / "postgres.log", SERVER_SETTINGS) as server:
        yield server


@pytest.fixture
def db_cluster_factory(db_server: PostgresServer, cluster_factory) -> Iterator[Callable]:
    """``cluster_factory`` with every node's database (``jepsen_nN``) on ``db_server``."""

    def make(**options: Any) -> Cluster:
        env = {**options.pop("extra_env", {}), **NODE_ENV}
        return cluster_factory(
            backend="postgres",
            postgres_url=db_server.base_url,
            database_prefix="jepsen",
            extra_env=env,
            **options,
        )

    yield make
    if not db_server.alive():  # a test that failed mid-crash: the clusters drop their databases
        with contextlib.suppress(Exception):
            db_server.start()


def seed() -> int | None:
    return int(os.environ["JEPSEN_SEED"]) if os.environ.get("JEPSEN_SEED") else None


def read(client: Client, history: History, node: int, key: str, timeout: float = 20.0):
    """A linearizable read of ``1/key`` on ``node`` into ``history``, retried (same op) until it
    answers: the first one on a thread whose connection died with the server fails."""
    op = history.invoke(f"reader{node}", "get", f"1/{key}", node=node)
    deadline = time.monotonic() + timeout
    while True:
        op.attempts += 1
        reply = client.get(node, 1, key)
        if reply.type == OK or time.monotonic() > deadline:
            return history.complete(op, reply.type, reply.output, reply.error)
        time.sleep(0.05)


def supervise(cluster: Cluster, exits: list[tuple[int, int | None, str]]) -> None:
    """What systemd's ``Restart=on-failure`` does: start every node that exited, noting how
    (node, status, last lines)."""
    for node_id, node in cluster.nodes.items():
        if node.process is not None and not node.alive():
            exits.append((node_id, node.process.returncode, cluster.tail(node_id, 5)))
            cluster.start_node(node_id, wait=False)


def test_acknowledged_writes_survive_a_database_crash(db_server, db_cluster_factory) -> None:
    cluster: Cluster = db_cluster_factory(size=3, groups=(1,), request_timeout=2.0)
    history = History()
    client = Client(cluster)
    leader = cluster.wait_for_leader(1)
    for n in range(3):
        op = history.invoke("writer", "put", f"1/k{n}", f"v{n}", node=leader)
        reply = client.put(leader, 1, f"k{n}", f"v{n}", request_id=f"put-k{n}")
        history.complete(op, reply.type, reply.output, reply.error)
        assert reply.type == OK, reply
    for node in cluster.nodes:  # every node applied every write (a read waits for it)
        assert read(client, history, node, "k2").output == "v2"
    time.sleep(0.2)  # the followers' chosen marks (a heartbeat away): then nothing writes
    db_server.crash()
    db_server.start()
    survivors = cluster.live_nodes()
    # Nothing wrote while the server was down: the nodes lived through the crash (all of them,
    # as a rule), and answer reads from what they remember they applied.
    assert survivors, [cluster.tail(n, 5) for n in cluster.nodes]
    written = {"k0": "v0", "k1": "v1", "k2": "v2"}
    seen = {(node, key): read(client, history, node, key) for node in survivors for key in written}
    lost = {
        f"node {node} {key}": op.output if op.type == OK else op.error
        for (node, key), op in seen.items()
        if op.type != OK or op.output != written[key]
    }
    assert not lost, f"acknowledged writes not read back after the server crashed: {lost}"

    # Writes after the crash: every thread of a node replaces the connection the server closed
    # before it uses it (consensus/storage/reconnect.py), so the first write succeeds and stops
    # no node. (Its writer thread's first turn on that connection failed and stopped the node,
    # every node at once in a quiet cluster.)
    alive = set(cluster.live_nodes())
    leader = cluster.wait_for_leader(1)
    op = history.invoke("writer", "put", "1/after", "crash", node=leader)
    reply = client.put(leader, 1, "after", "crash", request_id="put-after")
    history.complete(op, reply.type, reply.output, reply.error)
    assert reply.type == OK, (reply, {n: cluster.tail(n, 5) for n in cluster.nodes})
    time.sleep(1.0)
    stopped = alive - set(cluster.live_nodes())
    assert not stopped, {n: cluster.tail(n, 5) for n in stopped}
    exits: list[tuple[int, int | None, str]] = []  # a node the crash itself stopped: restarted
    supervise(cluster, exits)
    for _node, status, last in exits:
        assert status == 1 and any(why in last for why in STORAGE_EXIT_LINES), exits
    cluster.wait_until_ready()
    for node in cluster.nodes:
        for key, value in {**written, "after": "crash"}.items():
            assert read(client, history, node, key).output == value, (node, key)
    logs = {node: cluster.chosen_log(node, 1) for node in cluster.nodes}
    longest = max(logs.values(), key=len)
    assert all(log == longest[: len(log)] for log in logs.values()), logs
    result = check(history.snapshot())
    assert result.valid, result.summary()


def test_jepsen_under_database_crashes(db_server, db_cluster_factory) -> None:
    faults = ("db-crash", "db-crash", "kill-random")  # two crashes of the server a round
    settings = Settings(
        seed=seed(),
        nodes=3,
        duration=12,
        clients=6,
        faults=faults,
        schedule="cycle",
        quiet=(0.3, 0.8),
        fault_duration=(0.3, 1.0),
    )
    jepsen = JepsenRun(settings, db_cluster_factory, database=db_server)
    report = jepsen.run()
    print(report.render())
    assert report.valid, report.render()
    assert report.faults["db-crash"] >= 2, report.render()
    assert db_server.crashes == report.faults["db-crash"]
    assert report.read_backs > 0, report.render()  # nodes lived through a crash and answered
    assert report.ops[OK] > 50, report.render()
    assert all(report.ok_by_f[f] > 0 for f in ("get", "put", "cas", "delete")), report.ok_by_f
    # (Not ``windows_compared``: a node counts the digest windows it compared since it started,
    # and after a db-crash every node may have restarted a moment ago.)
