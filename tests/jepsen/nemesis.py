"""The nemesis: faults injected into a live cluster while clients run.

One fault at a time: wait a quiet period, inject a fault, hold it, heal it, and so on until
``stop()``. Faults (``FAULTS``):

``kill-random`` / ``kill-leader``    ``kill -9`` of a node (the leader of a random group), restarted
                                      when healed
``pause-random`` / ``pause-leader``  SIGSTOP, SIGCONT when healed
``partition-halves``                  a random minority cut off from the majority
``partition-leader``                  a group's leader isolated from every other node
``partition-bridge``                  two sides that cannot talk, one node in both
``partition-one-way``                 a group's leader hears nobody, but everyone hears it
``slow-node``                         every link into one node delayed by 100-500 ms
``restart-all``                       ``kill -9`` of every node, then all start again at once
``wipe-random``                       ``kill -9`` of a node and its database deleted (a replaced
                                      disk): restarted empty when healed, it must rebuild before
                                      it votes (consensus/core/rebuild.py); first it waits (at
                                      most ``settle_timeout``) until every node serves and none
                                      rebuilds, as two lost databases of three are a lost
                                      majority, and is skipped if they never do
``db-crash``                          (``DATABASE_FAULTS``: a run whose nodes use a PostgreSQL
                                      server of the test's own, ``tests.fixtures.postgres_server``)
                                      the clients hold their next op (``Gate``) and the ops in
                                      flight finish; in the quiet cluster the server crashes
                                      (immediate stop: its unflushed WAL is gone); restarted when
                                      healed, then every key in use is read back linearizably on
                                      every node that lived through it (``read_back``) before the
                                      clients go on. (Quiet, because under load every node writes
                                      while the server is down and exits; a node that stays up
                                      and answers from memory is the case to check.)

Partitions cut the links between nodes only (``tests.fixtures.nemesis``); clients reach every
node directly, as in Jepsen. A node that exits without the nemesis killing it is a crash: it is
recorded (``crashes``) and started again so the run can go on.

A node whose database fails exits with status 1 by design, for a supervisor to restart it
(docs/operations.md, "A node whose database fails"; ``PaxosNode._fail``): a transaction that
failed halfway leaves its memory ahead of its disk, which only a restart mends. After a
``db-crash`` that is every node that writes while the server is down or starts meanwhile, and
one whose writer thread then runs a turn on the connection that died with the server (a look-up
there, such as a request id's stored result, fails its request and reconnects instead). So an
exit with status 1 that the node's last lines blame on its database, of a process that lived
through a ``db-crash``, is restarted like a crash but recorded in ``storage_exits``, not
``crashes``, and ``expected_log_spans`` marks its log from the crash to its exit, where
``workloads`` does not count the errors of the lost connection. Any other exit is a crash.

``injected`` counts a fault once it was applied, and only then. A fault that cannot be applied
now (no live node to target, a cluster that does not settle for a wipe) does nothing and is
counted in ``skipped``; one that fails half-way (anything raised while injecting or healing) is a
harness failure in ``errors``, which makes a run's report invalid (``workloads.Report``).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from tests.fixtures.cluster import Cluster, ClusterError
from tests.fixtures.nemesis import ProxyNetwork
from tests.fixtures.postgres_server import PostgresServer

from .client import NotSent, http_call
from .history import History

FAULTS = (
    "kill-random",
    "kill-leader",
    "pause-random",
    "pause-leader",
    "partition-halves",
    "partition-leader",
    "partition-bridge",
    "partition-one-way",
    "slow-node",
    "restart-all",
    "wipe-random",
)
DATABASE_FAULTS = ("db-crash",)
"""Faults that need the nodes' database server to be the test's own (``Nemesis(database=...)``):
not in ``FAULTS``, which any run can inject."""
KNOWN_FAULTS = FAULTS + DATABASE_FAULTS

STORAGE_EXIT_LINES = (
    "stopped after a storage failure",
    "cannot reach the database",
    "could not prepare its database",
    "django.db.utils.OperationalError",
)
"""What the last lines of a node that exited with status 1 because its database failed say:
``runpaxos``'s line after a failure while running, or while it started (no database to start
on, a migration that failed); a node whose database failed while it replayed its log at start
ends with the driver's traceback instead."""

Heal = Callable[[], None]


class Gate:
    """The clients pass it before each op (``op()``); a fault that needs a quiet cluster closes
    it (``close``: new ops wait, the ops in flight finish) and opens it again when healed."""

    def __init__(self, max_wait: float = 60.0) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._busy = 0
        self.max_wait = max_wait
        """An op waits at most this long for a closed gate (a fault that never heals must not
        hang the clients; the run's report says so anyway)."""

    @contextlib.contextmanager
    def op(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._open, self.max_wait)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Hold new ops; True once no op is in flight, False if some still are after
        ``timeout`` seconds (the gate stays closed either way)."""
        with self._cond:
            self._open = False
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


class Skipped(Exception):  # noqa: N818 - not an error: the fault was not applicable now
    """A fault that cannot be applied now; nothing was done (``Nemesis.skipped``)."""


class Nemesis:
    def __init__(
        self,
        cluster: Cluster,
        network: ProxyNetwork,
        history: History,
        rng: random.Random,
        faults: Sequence[str] = FAULTS,
        quiet: tuple[float, float] = (1.0, 3.0),
        duration: tuple[float, float] = (1.0, 4.0),
        schedule: str = "random",
        settle_timeout: float = 20.0,
        database: PostgresServer | None = None,
        gate: Gate | None = None,
        read_back: Callable[[list[int]], None] | None = None,
    ) -> None:
        unknown = set(faults) - set(KNOWN_FAULTS)
        if unknown or not faults:
            raise ValueError(f"unknown faults {sorted(unknown)} (known: {KNOWN_FAULTS})")
        self.cluster = cluster
        self.network = network
        self.history = history
        self.rng = rng
        self.faults = list(faults)
        self.quiet = quiet
        self.duration = duration
        self.schedule = schedule
        self.settle_timeout = settle_timeout
        """How long ``wipe-random`` waits for every node to serve with no group rebuilding."""
        self.database = database
        """The PostgreSQL server every node's database is on, the test's own (``db-crash``)."""
        self.gate = gate
        """The clients' gate, closed around a ``db-crash``."""
        self.read_back = read_back
        """After a ``db-crash``: read every key in use on these nodes (into the history)."""
        self.injected: Counter[str] = Counter()
        """Faults applied, by name (a ``wipe-random`` here deleted a database)."""
        self.skipped: Counter[str] = Counter()
        """Faults not applicable when their turn came (nothing done), by name and reason."""
        self.crashes: list[str] = []
        self.storage_exits: list[str] = []
        """Nodes that exited with status 1 on their database's failure after a ``db-crash``
        (by design; restarted as a supervisor would)."""
        self.expected_log_spans: dict[int, list[tuple[int, int | None]]] = {}
        """Per node: byte ranges of its log, from a ``db-crash`` to the exit of the process
        that lived through it (None: it still runs), where its database's errors are expected."""
        self._through_db_crash: set[int] = set()  # PIDs of node processes alive at a db-crash
        self._open_spans: dict[int, int] = {}  # node -> where its current span began
        self.errors: list[str] = []
        self._killed: set[int] = set()
        self._paused: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop injecting, heal the current fault, and make sure every node runs again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            if self._thread.is_alive():
                self.errors.append("the nemesis thread did not stop within 120 s")
        self.heal_all()

    def _run(self) -> None:
        order: list[str] = []
        while not self._stop.wait(self.rng.uniform(*self.quiet)):
            try:
                self.check_crashes()
            except Exception as error:  # noqa: BLE001 - recorded: the report is then invalid
                self.errors.append(f"restarting a crashed node: {error!r}")
            if self.schedule == "cycle":
                if not order:
                    order = self.rng.sample(self.faults, len(self.faults))
                name = order.pop()
            else:
                name = self.rng.choice(self.faults)
            try:
                heal = self.inject(name)
            except Skipped as skipped:
                self.skipped[f"{name} ({skipped})"] += 1
                continue
            except Exception as error:  # noqa: BLE001 - any of them: the loop must go on
                self.errors.append(f"{name}: {error!r}")
                continue
            self._stop.wait(self.rng.uniform(*self.duration))
            try:
                heal()
            except Exception as error:  # noqa: BLE001
                self.errors.append(f"healing {name}: {error!r}")

    # ------------------------------------------------------------------ faults

    def inject(self, name: str) -> Heal:
        """Inject ``name`` now; returns the function that heals it. Counted in ``injected`` once
        it was applied; raises ``Skipped`` (nothing done) when it cannot be now."""
        heal = self._apply(name)
        self.injected[name] += 1
        return heal

    def _target(self, name: str) -> int:
        """A running, unpaused node: at random, or the leader of a random group."""
        with self._lock:
            paused = set(self._paused)
        live = [node for node in self.cluster.live_nodes() if node not in paused]
        if not live:
            raise Skipped("no node running")
        node = self.leader() if name.endswith("-leader") else self.rng.choice(live)
        if node not in live:
            raise Skipped(f"leader {node} not running")
        return node

    def _apply(self, name: str) -> Heal:
        nodes = list(self.cluster.nodes)
        if name in ("kill-random", "kill-leader"):
            node = self._target(name)
            fault = self.history.fault(name, f"node {node}")
            self._kill(node)

            def heal() -> None:
                self._restart(node)
                self.history.healed(fault)

            return heal
        if name in ("pause-random", "pause-leader"):
            node = self._target(name)
            fault = self.history.fault(name, f"node {node}")
            with self._lock:
                self._paused.add(node)
            self.cluster.pause_node(node)

            def heal() -> None:
                self.cluster.resume_node(node)
                with self._lock:
                    self._paused.discard(node)
                self.history.healed(fault)

            return heal
        if name == "wipe-random":
            if not self._settled(self.settle_timeout):
                raise Skipped("a node down, starting or rebuilding")
            node = self._target(name)
            fault = self.history.fault(name, f"node {node}, database deleted")
            self._kill(node)
            self.cluster.delete_database(node)  # raises if the node still runs

            def heal() -> None:
                self._restart(node)
                self.history.healed(fault)

            return heal
        if name == "db-crash":
            return self._db_crash()
        if name == "restart-all":
            fault = self.history.fault(name, "every node")
            for node in nodes:
                self._kill(node)
            for node in nodes:
                self._restart(node)
            self.history.healed(fault)
            return lambda: None
        if name == "slow-node":
            node = self.rng.choice(nodes)
            seconds = self.rng.uniform(0.1, 0.5)
            fault = self.history.fault(name, f"links into node {node} delayed {seconds:.2f}s")
            pairs = [(other, node) for other in nodes if other != node]
            self.network.delay(seconds, pairs)
            return self._network_heal(fault, pairs)
        # partitions
        shuffled = self.rng.sample(nodes, len(nodes))
        if name == "partition-halves":
            minority = set(shuffled[: len(nodes) // 2])
            components = [minority, set(nodes) - minority]
            detail = f"{sorted(minority)} | {sorted(set(nodes) - minority)}"
            fault = self.history.fault(name, detail)
            self.network.partition(components)
        elif name == "partition-leader":
            leader = self.leader()
            fault = self.history.fault(name, f"leader {leader} isolated")
            self.network.isolate(leader)
        elif name == "partition-bridge":
            half = (len(nodes) - 1) // 2
            left, bridge, right = shuffled[:half], shuffled[half], shuffled[half + 1 :]
            fault = self.history.fault(name, f"{sorted(left)} <- {bridge} -> {sorted(right)}")
            self.network.partition([{*left, bridge}, {bridge, *right}])
        elif name == "partition-one-way":
            leader = self.leader()
            fault = self.history.fault(name, f"nobody reaches leader {leader}; it reaches all")
            self.network.cut([(other, leader) for other in nodes if other != leader])
        else:
            raise ValueError(name)
        return self._network_heal(fault, None)

    def _db_crash(self) -> Heal:
        database = self.database
        if database is None:
            raise Skipped("the nodes' database server is not the test's own")
        if not database.alive():
            raise Skipped("the database server is down")
        drained = self.gate.close(timeout=5.0) if self.gate is not None else False
        try:
            # Let the nodes finish what the last ops left (chosen marks and applications on
            # the followers, a heartbeat away): then nothing writes, and it all sits in the
            # server's memory if a commit did not wait for the disk.
            self._stop.wait(self.rng.uniform(0.1, 0.3))
            survivors = {n: self.cluster.nodes[n].pid for n in self.cluster.live_nodes()}
            for node in self.cluster.nodes:
                self._open_span(node)
            fault = self.history.fault(
                "db-crash",
                f"PostgreSQL server (pid {database.pid}) stopped immediately"
                + ("" if drained else "; client ops still in flight"),
            )
            database.crash()
        except BaseException:
            if self.gate is not None:
                self.gate.open()
            raise

        def heal() -> None:
            try:
                database.start()
                self.check_crashes()  # the supervisor: whoever exited meanwhile starts again
                alive = [  # the same processes: a restarted node remembers nothing
                    n
                    for n, pid in survivors.items()
                    if self.cluster.nodes[n].alive() and self.cluster.nodes[n].pid == pid
                ]
                if self.read_back is not None and alive:
                    self.read_back(alive)
            finally:
                if self.gate is not None:
                    self.gate.open()
            self.history.healed(fault)

        return heal

    def _open_span(self, node: int) -> None:
        process = self.cluster.nodes[node].process
        if process is None or process.poll() is not None:
            return
        with self._lock:
            self._through_db_crash.add(process.pid)
            if node not in self._open_spans:
                self._open_spans[node] = self._log_size(node)
                self.expected_log_spans.setdefault(node, []).append((self._open_spans[node], None))

    def _close_span(self, node: int) -> None:
        """The process that lived through a db-crash is gone: its span ends here."""
        with self._lock:
            start = self._open_spans.pop(node, None)
            if start is not None:
                spans = self.expected_log_spans[node]
                spans[spans.index((start, None))] = (start, self._log_size(node))

    def _log_size(self, node: int) -> int:
        try:
            return os.path.getsize(self.cluster.nodes[node].log_path)
        except OSError:
            return 0

    def _storage_exit(self, node: int, process: subprocess.Popen[bytes]) -> bool:
        """Whether a process that exited did so by design on its database's failure, after a
        db-crash it lived through."""
        if process.returncode != 1 or process.pid not in self._through_db_crash:
            return False
        last = self.cluster.tail(node, 5)
        return any(line in last for line in STORAGE_EXIT_LINES)

    def _network_heal(self, fault: object, pairs: list[tuple[int, int]] | None) -> Heal:
        def heal() -> None:
            self.network.heal(pairs)
            self.history.healed(fault)  # type: ignore[arg-type]

        return heal

    def _kill(self, node: int) -> None:
        with self._lock:
            self._killed.add(node)
            self._paused.discard(node)
        self.cluster.kill_node(node)
        if self.cluster.nodes[node].alive():
            raise ClusterError(f"node {node} survived kill -9")
        self._close_span(node)

    def _restart(self, node: int) -> None:
        if not self.cluster.nodes[node].alive():
            self.cluster.start_node(node, wait=False)
        with self._lock:
            self._killed.discard(node)

    # ------------------------------------------------------------------ helpers

    def _settled(self, timeout: float) -> bool:
        """Wait until every node serves and no group rebuilds; False after ``timeout`` (or when
        the nemesis stops)."""
        deadline = time.monotonic() + timeout
        while self._anyone_rebuilding():
            if time.monotonic() > deadline or self._stop.wait(0.2):
                return False
        return True

    def _anyone_rebuilding(self) -> bool:
        """Whether a node is down or says a group still rebuilds (unknown counts as yes)."""
        for node in self.cluster.nodes:
            try:
                status, body = http_call(
                    self.cluster.nodes[node].port, "GET", "/api/status/", timeout=2.0
                )
            except (NotSent, OSError, ValueError):
                return True
            if status != 200 or any(group.get("rebuilding") for group in body["groups"]):
                return True
        return False

    def leader(self) -> int:
        """The leader of a random group as most live nodes see it (a random node if none)."""
        group = self.rng.choice(self.cluster.groups)
        seen: Counter[int] = Counter()
        for node in self.cluster.live_nodes():
            if node in self._paused:
                continue
            with contextlib.suppress(NotSent, OSError, ValueError, KeyError, TypeError):
                status, body = http_call(
                    self.cluster.nodes[node].port, "GET", "/api/status/", timeout=1.0
                )
                if status == 200:
                    for entry in body["groups"]:
                        if entry["group_id"] == group and entry["leader"] is not None:
                            seen[entry["leader"]] += 1
        if seen:
            return seen.most_common(1)[0][0]
        live = [node for node in self.cluster.live_nodes() if node not in self._paused]
        return self.rng.choice(live or list(self.cluster.nodes))

    def check_crashes(self) -> None:
        """Nodes that exited although the nemesis did not kill them: record and restart."""
        for node_id, node in self.cluster.nodes.items():
            with self._lock:
                killed = node_id in self._killed
            if node.process is not None and not node.alive() and not killed:
                code = node.process.returncode
                record = f"node {node_id} exited with {code} at {time.monotonic():.1f}"
                if self._storage_exit(node_id, node.process):
                    last = self.cluster.tail(node_id, 1)
                    self.storage_exits.append(f"{record}: {last[:300]}")
                else:
                    self.crashes.append(f"{record}:\n{self.cluster.tail(node_id, 30)}")
                self._close_span(node_id)
                self.cluster.start_node(node_id, wait=False)

    def heal_all(self, timeout: float = 60.0) -> None:
        """Heal the network, start the database server, resume and restart every node, wait
        until all serve; let the clients go on."""
        self.network.heal()
        if self.database is not None and not self.database.alive():
            self.database.start()
        if self.gate is not None:
            self.gate.open()
        for node in list(self.cluster.nodes):
            with contextlib.suppress(OSError):
                self.cluster.resume_node(node)
        with self._lock:
            self._paused.clear()
        self.check_crashes()
        for node in list(self.cluster.nodes):
            self._restart(node)
        for node in self.cluster.nodes:
            self.cluster.wait_until_serving(node, timeout)
