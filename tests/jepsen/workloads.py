"""Workloads on a live cluster under a nemesis, and the checks that end a run.

``JepsenRun(settings, make_cluster).run()`` does everything and returns a ``Report``:

1. starts a proxy per directed peer link and a cluster whose nodes dial each other through them;
2. runs, for ``settings.duration`` seconds,
   - register clients: put / get / delete / cas on a few keys of every group, each op to a random
     node, values unique (``c<client>.<n>``); a key is retired after ``ops_per_key`` ops and a
     fresh one takes its place (Jepsen's "independent" keys: short per-key histories);
   - bank clients: transfers between accounts spread over the groups, each a cas debit then a
     cas credit; a cas is retried with the *same* request id until its outcome is known, so
     exactly-once retries are part of what is tested;
   - the nemesis (``nemesis.Nemesis``);
3. heals everything, lets the bank finish its transfers in flight, waits until every node has
   applied the same prefix of every group;
4. reads every key from every node: linearizably through the API (added to the history) and
   from the node's database (its local state);
5. checks: linearizability per key (``checker.check``), no acknowledged write lost and every node
   holding the same value (``checker.lost_writes``), the bank's total on every node, the same
   chosen log on every node, no result digest that differed between nodes, no node crash, no
   ERROR line or traceback in a node's log, and no failure of the harness itself (a fault that
   could not be injected or healed, a client thread that never finished): a run the harness did
   not carry out as planned proves nothing, so its report is invalid too.

With ``JepsenRun(..., database=server)`` (a PostgreSQL server of the test's own,
``tests.fixtures.postgres_server``; the cluster must use it) the ``db-crash`` fault can crash it:
a node's exit on its database's failure is then by design (``nemesis.Nemesis.storage_exits``),
and so are the errors of the lost connection in its log until it exits (``expected_log_errors``).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.cluster import Cluster
from tests.fixtures.nemesis import ProxyNetwork
from tests.fixtures.postgres_server import PostgresServer

from . import checker
from .client import Client, LyingClient
from .history import FAIL, INFO, OK, UNKNOWN, Fault, History, Op
from .nemesis import DATABASE_FAULTS, FAULTS, Gate, Nemesis

DIGEST_SETTINGS = {"PAXOS_DIGEST_WINDOW": "20", "PAXOS_STATE_CHECK_INTERVAL": "0.5"}
"""Small windows and frequent state checks: through every fault, the nodes' result and state
digests must agree (README "Nodes whose state machines differ")."""


@dataclass
class Settings:
    nodes: int = 3
    groups: tuple[int, ...] = (1, 2)
    duration: float = 20.0
    clients: int = 6
    keys_per_group: int = 2
    ops_per_key: int = 200
    mix: tuple[tuple[str, float], ...] = (("get", 4), ("put", 3), ("cas", 2), ("delete", 1))
    bank_accounts: int = 4
    bank_clients: int = 2
    bank_balance: int = 100
    faults: tuple[str, ...] = FAULTS
    schedule: str = "random"
    """"random": each fault drawn at random; "cycle": every fault once per round, in a shuffled
    order, and the run lasts until each had its turn (at most 30 s past ``duration``)."""
    quiet: tuple[float, float] = (0.5, 2.0)
    fault_duration: tuple[float, float] = (1.0, 3.0)
    api: str = "kv"
    reads: str = "linearizable"
    """"local": ``?consistency=local`` reads (unsafe: the negative control)."""
    lying_clients: int = 0
    """How many register clients acknowledge writes before commit (``LyingClient``)."""
    retries: int = 2
    """Retries of an op with an unknown outcome (same request id, other nodes), by the clients
    with an even number; odd ones never retry, so their timeouts stay indeterminate."""
    seed: int | None = None
    timeout_ms: int = 300
    learning_interval_ms: int = 200
    request_timeout: float = 2.0
    check_time_limit: float = 300.0
    finish_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1 << 31)


@dataclass
class Report:
    settings: Settings
    ops: Counter[str] = field(default_factory=Counter)
    by_f: Counter[str] = field(default_factory=Counter)
    ok_by_f: Counter[str] = field(default_factory=Counter)
    """The register clients' ops that completed ok, by kind (get, put, cas, delete)."""
    faults: Counter[str] = field(default_factory=Counter)
    """Faults applied (``Nemesis.injected``): a ``wipe-random`` here deleted a database."""
    skipped_faults: Counter[str] = field(default_factory=Counter)
    """Faults whose turn came when they could not be applied (nothing done), with the reason."""
    rebuilt: int = 0
    """Notices in the nodes' logs that a group rebuilt a deleted database before voting again
    (one per group and process that did: a wiped node restarted mid-rebuild says it again)."""
    transfers: int = 0
    linearizability: checker.CheckResult | None = None
    lost_writes: list[str] = field(default_factory=list)
    bank: list[str] = field(default_factory=list)
    agreement: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    storage_exits: list[str] = field(default_factory=list)
    """Nodes that exited on their database's failure after a ``db-crash``: by design, not
    problems (``Nemesis.storage_exits``)."""
    expected_log_errors: int = 0
    """ERROR lines and tracebacks of a lost database connection, in a node's log between a
    ``db-crash`` and the exit of the process that lived through it: expected, not counted in
    ``node_errors``."""
    read_backs: int = 0
    """Linearizable reads after a ``db-crash``, before the clients went on, that answered."""
    nemesis_errors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    node_errors: list[str] = field(default_factory=list)
    """ERROR / CRITICAL lines and tracebacks in the nodes' logs (none in a healthy run: faults
    log at WARNING at most)."""
    anomalies: Counter[str] = field(default_factory=Counter)
    availability: dict[str, float] = field(default_factory=dict)
    """Register ops completed ok per second: with no fault active, and during each fault type
    (a fault the cluster should ride out but that stops all progress is a liveness problem)."""
    windows_compared: int = 0
    """Result digest windows the nodes compared (``DIGEST_SETTINGS``): any that differed is a
    problem under ``agreement``."""
    run_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    check_seconds: float = 0.0
    history: History | None = None
    history_path: Path | None = None

    @property
    def problems(self) -> list[str]:
        problems = [
            *self.lost_writes,
            *self.bank,
            *self.agreement,
            *self.crashes,
            *self.node_errors,
            *(f"harness: {error}" for error in [*self.nemesis_errors, *self.errors]),
        ]
        if self.linearizability is not None and not self.linearizability.valid:
            problems.insert(0, self.linearizability.summary())
        return problems

    @property
    def verdict(self) -> str:
        if self.linearizability is None:
            return "not checked"
        if self.linearizability.verdict == checker.INVALID or self.problems:
            return "INVALID"
        return self.linearizability.verdict.upper()

    @property
    def valid(self) -> bool:
        return self.verdict == "VALID"

    def render(self) -> str:
        s = self.settings
        total = sum(self.ops.values())
        faults = ", ".join(f"{name} {count}" for name, count in sorted(self.faults.items()))
        skipped = ", ".join(f"{name} {n}" for name, n in sorted(self.skipped_faults.items()))
        lines = [
            f"jepsen: {s.nodes} nodes, groups {list(s.groups)}, api={s.api} reads={s.reads}, "
            f"{s.clients} register + {s.bank_clients} bank clients, seed {s.seed}",
            f"  ran {self.run_seconds:.1f}s: {total} ops ({self.ops[OK]} ok, {self.ops[FAIL]} "
            f"failed, {self.ops[INFO]} indeterminate); "
            + ", ".join(f"{f} {n}" for f, n in sorted(self.by_f.items())),
            f"  faults injected: {sum(self.faults.values())} ({faults or 'none'})"
            + (f"; skipped: {skipped}" if skipped else ""),
            f"  rebuilds of a deleted database logged: {self.rebuilt}",
            *(
                [
                    f"  database crashes: nodes exited on it {len(self.storage_exits)}, expected "
                    f"connection errors logged {self.expected_log_errors}, reads after it "
                    f"{self.read_backs}"
                ]
                if self.faults.get("db-crash") or self.storage_exits
                else []
            ),
            f"  bank transfers: {self.transfers}",
            f"  result digest windows compared: {self.windows_compared}",
            f"  checked in {self.check_seconds:.2f}s: "
            + (self.linearizability.summary() if self.linearizability else "not checked"),
            f"  lost writes: {len(self.lost_writes)}, bank problems: {len(self.bank)}, "
            f"log disagreements: {len(self.agreement)}, crashes: {len(self.crashes)}, "
            f"node log errors: {len(self.node_errors)}, harness errors: "
            f"{len(self.nemesis_errors) + len(self.errors)}",
        ]
        if self.availability:
            lines.append(
                "  ok ops/s: "
                + ", ".join(f"{name} {rate:.0f}" for name, rate in self.availability.items())
            )
        for problem in [*self.lost_writes, *self.bank, *self.agreement, *self.crashes][:10]:
            lines.append(f"  ! {problem}")
        for line in self.node_errors[:10]:
            lines.append(f"  ! (node log) {line}")
        for error in [*self.nemesis_errors, *self.errors][:10]:
            lines.append(f"  ! (harness) {error}")
        for anomaly, count in self.anomalies.most_common(5):
            lines.append(f"  (anomaly x{count}) {anomaly}")
        timing = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.phases.items())
        lines.append(f"  time: {timing}")
        if self.history_path is not None:
            lines.append(f"  history: {self.history_path}")
        lines.append(f"  verdict: {self.verdict}")
        return "\n".join(lines)


def availability(ops: list[Op], faults: list[Fault]) -> dict[str, float]:
    """Ok register ops per second outside faults and during each fault type."""
    done = sorted(op.ret for op in ops if op.type == OK and op.process.startswith("c") and op.ret)
    if not done:
        return {}
    windows: dict[str, list[tuple[int, int]]] = {}
    for fault in faults:
        end = fault.end if fault.end is not None else done[-1]
        if end > fault.start:
            windows.setdefault(fault.name, []).append((fault.start, end))
    rates: dict[str, float] = {}
    busy = 0
    counted = 0
    for name, spans in sorted(windows.items()):
        seconds = sum(b - a for a, b in spans) / 1e9
        count = sum(bisect.bisect(done, b) - bisect.bisect(done, a) for a, b in spans)
        busy += sum(b - a for a, b in spans)
        counted += count
        rates[name] = count / seconds if seconds else 0.0
    quiet = (done[-1] - done[0] - busy) / 1e9
    if quiet > 0:
        rates = {"no fault": max(0, len(done) - counted) / quiet, **rates}
    return rates


# --------------------------------------------------------------------------- node logs

_TIMESTAMP = re.compile(rb"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:,]+ ")
LOST_CONNECTION = re.compile(
    r"OperationalError|InterfaceError|server closed the connection|connection is (closed|lost)"
    r"|terminating connection|connection refused|connection failed|the database system is"
    r"|stopping the process after the storage failure"
)
"""A database that went away, in a log entry (psycopg's and Django's words for it), or the
line with which a node stops after it (``runpaxos``)."""


def log_entries(path: Path) -> Iterator[tuple[int, str, str]]:
    """Every line of a node's log with its byte offset and its entry: the line and, for a
    timestamped one, the lines up to the next timestamped one (a traceback)."""
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    starts = list(itertools.accumulate((len(line) for line in lines), initial=0))
    for i, line in enumerate(lines):
        end = i + 1
        if _TIMESTAMP.match(line) or line.startswith(b"Traceback"):
            while end < len(lines) and not _TIMESTAMP.match(lines[end]):
                end += 1
        entry = b"".join(lines[i:end]).decode(errors="replace")
        yield starts[i], line.decode(errors="replace").rstrip("\r\n"), entry


def expected_database_error(offset: int, entry: str, spans: list[tuple[int, int | None]]) -> bool:
    """An error entry at ``offset`` of a node's log that a ``db-crash`` explains: inside one of
    the node's spans from a crash to the exit of the process that lived through it, and about
    the lost connection."""
    inside = any(start <= offset and (end is None or offset < end) for start, end in spans)
    return inside and LOST_CONNECTION.search(entry) is not None


# --------------------------------------------------------------------------- keys


def balance_of(value: str) -> int:
    return int(value.split("|", 1)[0])


class KeySpace:
    """The keys register clients use right now, retired after ``ops_per_key`` ops."""

    def __init__(self, groups: tuple[int, ...], per_group: int, ops_per_key: int) -> None:
        self.groups = groups
        self.ops_per_key = ops_per_key
        self._names = itertools.count()
        self._lock = threading.Lock()
        self.active = {g: [self._fresh() for _ in range(per_group)] for g in groups}
        self.used: set[tuple[int, str]] = set()
        self._count: Counter[tuple[int, str]] = Counter()
        self._values: dict[tuple[int, str], list[str | None]] = {}

    def _fresh(self) -> str:
        return f"r{next(self._names)}"

    def pick(self, rng: random.Random) -> tuple[int, str]:
        with self._lock:
            group = rng.choice(self.groups)
            slot = rng.randrange(len(self.active[group]))
            key = self.active[group][slot]
            self.used.add((group, key))
            self._count[(group, key)] += 1
            if self._count[(group, key)] >= self.ops_per_key:
                self.active[group][slot] = self._fresh()
            return group, key

    def in_use(self) -> set[tuple[int, str]]:
        """Every key a client picked so far (a copy)."""
        with self._lock:
            return set(self.used)

    def saw(self, group: int, key: str, value: str | None) -> None:
        with self._lock:
            recent = self._values.setdefault((group, key), [])
            recent.append(value)
            del recent[:-4]

    def guess(self, group: int, key: str, rng: random.Random) -> str | None:
        """A plausible current value for a cas (often right, sometimes stale)."""
        with self._lock:
            recent = self._values.get((group, key))
            return rng.choice(recent) if recent else None


# --------------------------------------------------------------------------- the run


class JepsenRun:
    def __init__(
        self,
        settings: Settings,
        make_cluster: Callable[..., Cluster],
        database: PostgresServer | None = None,
    ) -> None:
        self.settings = settings
        self.make_cluster = make_cluster
        self.database = database
        """The PostgreSQL server of the nodes' databases, when it is the test's own (the
        ``db-crash`` fault crashes it; ``make_cluster`` must put the nodes on it)."""
        self.gate = Gate()
        self.rng = random.Random(settings.seed)
        self.history = History()
        self.report = Report(settings, history=self.history)
        self.run_id = uuid.uuid4().hex[:8]
        self.stop = threading.Event()
        self.finish_by = float("inf")
        self.keys = KeySpace(settings.groups, settings.keys_per_group, settings.ops_per_key)
        self.accounts = [
            (settings.groups[i % len(settings.groups)], f"acct{i}")
            for i in range(settings.bank_accounts if settings.bank_clients else 0)
        ]
        self.cluster: Cluster | None = None
        self.network: ProxyNetwork | None = None
        self.nemesis: Nemesis | None = None
        self._threads: list[threading.Thread] = []
        self._transfers = itertools.count()
        self._credits = itertools.count()
        self._lying: list[LyingClient] = []
        self._anomaly_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> Report:
        s = self.settings
        started = time.monotonic()
        mark = [started]

        def phase(name: str) -> None:
            now = time.monotonic()
            self.report.phases[name] = now - mark[0]
            mark[0] = now

        self.network = ProxyNetwork(range(1, s.nodes + 1))
        try:
            self.cluster = self.make_cluster(
                start=False,
                size=s.nodes,
                groups=s.groups,
                timeout_ms=s.timeout_ms,
                learning_interval_ms=s.learning_interval_ms,
                request_timeout=s.request_timeout,
                link_ports=self.network.link_ports,
                extra_env=DIGEST_SETTINGS,
            )
            self.network.set_targets({n: node.port for n, node in self.cluster.nodes.items()})
            self.cluster.start()
            self.setup_bank()
            phase("start")
            self.nemesis = Nemesis(
                self.cluster,
                self.network,
                self.history,
                random.Random(self.rng.random()),
                faults=s.faults,
                quiet=s.quiet,
                duration=s.fault_duration,
                schedule=s.schedule,
                database=self.database,
                gate=self.gate,
                read_back=self.read_back,
            )
            self.start_clients()
            self.nemesis.start()
            self.stop.wait(s.duration)
            if s.schedule == "cycle":  # go on until every fault type had its turn
                deadline = time.monotonic() + 30
                while set(self.nemesis.injected) != set(s.faults) and not self.stop.wait(0.2):
                    if time.monotonic() > deadline:
                        break
            self.stop.set()
            phase("workload")
            self.nemesis.stop()
            self.finish_by = time.monotonic() + s.finish_timeout
            self.join_clients(s.finish_timeout + 4 * s.request_timeout * (s.retries + 1))
            for liar in self._lying:
                liar.join(s.request_timeout + 5)
            if set(s.faults) & set(DATABASE_FAULTS):
                # A node that lived through a db-crash may exit on its next write (by design):
                # the clients' last writes may have stopped one.
                self.nemesis.heal_all()
            phase("heal")
            self.converge()
            phase("converge")
            finals = self.final_reads()
            phase("final reads")
            self.report.run_seconds = time.monotonic() - started
            self.report.history_path = self.save_history(self.cluster.folder / "history.jsonl")
            self.check(finals)
            phase("check")
            return self.report
        finally:
            self.stop.set()
            self.finish_by = 0.0
            if self.nemesis is not None:
                with contextlib.suppress(Exception):
                    self.nemesis.stop()
            self.join_clients(30)
            for liar in self._lying:
                liar.join(s.request_timeout + 5)
            self.network.close()

    def start_clients(self) -> None:
        s = self.settings
        for number in range(s.clients):
            lying = number < s.lying_clients
            thread = threading.Thread(
                target=self.register_client,
                args=(number, lying),
                name=f"jepsen-client-{number}",
                daemon=True,
            )
            self._threads.append(thread)
        for number in range(s.bank_clients if self.accounts else 0):
            thread = threading.Thread(
                target=self.bank_client, args=(number,), name=f"jepsen-bank-{number}", daemon=True
            )
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def join_clients(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            self.report.errors.append(f"client threads still running: {alive}")

    # ------------------------------------------------------------------ operations

    def client(self, lying: bool = False, reads: str | None = None) -> Client:
        assert self.cluster is not None
        kind = LyingClient if lying else Client
        client = kind(self.cluster, api=self.settings.api, reads=reads or self.settings.reads)
        if isinstance(client, LyingClient):
            self._lying.append(client)
        return client

    def perform(
        self,
        client: Client,
        process: str,
        f: str,
        group: int,
        key: str,
        rng: random.Random,
        value: str | None = None,
        expected: str | None = None,
        retries: int | None = None,
        until: Callable[[], bool] | None = None,
    ) -> Op:
        """One op, retried on other nodes with the same request id (exactly-once) after a
        failure or an unknown outcome: ``retries`` times, or while ``until()`` is false. It
        waits while the gate is closed (``Gate``), and holds it until it ends."""
        with self.gate.op():
            return self._perform(
                client, process, f, group, key, rng, value, expected, retries, until
            )

    def _perform(
        self,
        client: Client,
        process: str,
        f: str,
        group: int,
        key: str,
        rng: random.Random,
        value: str | None,
        expected: str | None,
        retries: int | None,
        until: Callable[[], bool] | None,
    ) -> Op:
        assert self.cluster is not None
        nodes = list(self.cluster.nodes)
        order = rng.sample(nodes, len(nodes))
        op = self.history.invoke(process, f, f"{group}/{key}", value, expected, node=order[0])
        request_id = None if f == "get" else f"{self.run_id}-{process}-{op.index}"
        retries = self.settings.retries if retries is None else retries
        saw_info, error, refused = False, None, 0
        for attempt in itertools.count():
            node = order[attempt % len(order)]
            reply = client.call(
                f, node, group, key, value=value, expected=expected, request_id=request_id
            )
            op.attempts += 1
            if reply.type == OK:
                op.node = node
                return self.history.complete(op, OK, reply.output)
            error = reply.error
            saw_info = saw_info or reply.type == INFO
            if reply.type == FAIL and reply.status is not None:
                if not (reply.status == 404 and "unknown group" in (reply.error or "")):
                    break  # rejected as invalid: retrying cannot help
                # Every group here is configured on every node: a node still starting up
                # says 404 "unknown group" (a product bug, reported), and proposed nothing.
                self.anomaly("404 'unknown group' for a configured group (a node starting up)")
            # A refused connection sent nothing: try the next node, as a client library would.
            refused = refused + 1 if reply.type == FAIL else 0
            if 0 < refused < len(order):
                continue
            if until is not None:
                if until() or time.monotonic() > self.finish_by:
                    break
            elif attempt >= retries or self.stop.is_set():
                break
            time.sleep(rng.uniform(0.05, 0.3))
        return self.history.complete(op, INFO if saw_info else FAIL, error=error)

    def read_back(self, nodes: list[int], timeout: float = 5.0) -> None:
        """After a ``db-crash`` (the clients wait): every key in use read linearizably on each
        of ``nodes``, into the history, before anything writes again. A node that lived through
        the crash and answers from what it remembers, not from what its database kept, reads
        back an acknowledged write as lost: the checker sees a stale read."""
        keys = sorted(self.keys.in_use() | set(self.accounts))
        deadline = time.monotonic() + timeout

        def on(node: int) -> None:
            client = self.client(reads="linearizable")
            for group, key in keys:
                if time.monotonic() > deadline:
                    return  # the node does not answer (it exited, say): the clients go on
                op = self.history.invoke(f"readback{node}", "get", f"{group}/{key}", node=node)
                while True:
                    op.attempts += 1
                    reply = client.get(node, group, key)
                    # The first read on a thread whose connection died with the server fails
                    # (500); the next one reconnects.
                    if reply.type == OK or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                self.history.complete(op, reply.type, reply.output, reply.error)
                if reply.type == OK:
                    with self._anomaly_lock:
                        self.report.read_backs += 1

        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(on, nodes))

    def anomaly(self, text: str) -> None:
        """Wrong product behaviour that is not a consistency violation (counted, reported)."""
        with self._anomaly_lock:
            self.report.anomalies[text] += 1

    def register_client(self, number: int, lying: bool) -> None:
        rng = random.Random(f"{self.settings.seed}-{number}")
        client = self.client(lying=lying)
        process = f"{'liar' if lying else 'c'}{number}"
        names, weights = zip(*self.settings.mix, strict=True)
        for sequence in itertools.count():
            if self.stop.is_set():
                return
            group, key = self.keys.pick(rng)
            f = rng.choices(names, weights)[0]
            value = f"{process}.{sequence}" if f in ("put", "cas") else None
            expected = self.keys.guess(group, key, rng) if f == "cas" else None
            retries = 0 if number % 2 else None
            op = self.perform(client, process, f, group, key, rng, value, expected, retries)
            if op.type != OK:
                time.sleep(rng.uniform(0.05, 0.3))
            if op.type == OK:
                if f == "get":
                    self.keys.saw(group, key, op.output)
                elif f == "put":
                    self.keys.saw(group, key, value)
                elif f == "cas" and op.output[1] is not UNKNOWN:
                    self.keys.saw(group, key, op.output[1])

    # ------------------------------------------------------------------ bank

    def setup_bank(self) -> None:
        client = self.client()
        rng = random.Random(self.settings.seed)
        deadline = time.monotonic() + 30
        for group, key in self.accounts:
            op = self.perform(
                client,
                "bank-setup",
                "put",
                group,
                key,
                rng,
                value=f"{self.settings.bank_balance}|open",
                until=lambda: time.monotonic() > deadline,
            )
            if op.type != OK:
                raise AssertionError(f"could not open account {group}/{key}: {op.error}")

    def bank_client(self, number: int) -> None:
        rng = random.Random(f"{self.settings.seed}-bank-{number}")
        client = self.client(reads="linearizable")
        process = f"bank{number}"
        for sequence in itertools.count():
            if self.stop.is_set():
                return
            source, target = rng.sample(self.accounts, 2)
            amount = rng.randint(1, 10)
            tag = f"{process}.{sequence}"
            if self.transfer(client, process, rng, source, target, amount, tag):
                next(self._transfers)

    def _definite(self, client: Client, process: str, rng: random.Random, *args: Any) -> Op:
        """A cas retried with one request id until its outcome is known (or time is up)."""
        f, group, key, expected, value = args
        return self.perform(
            client,
            process,
            f,
            group,
            key,
            rng,
            value=value,
            expected=expected,
            until=lambda: False,
        )

    def transfer(
        self,
        client: Client,
        process: str,
        rng: random.Random,
        source: tuple[int, str],
        target: tuple[int, str],
        amount: int,
        tag: str,
    ) -> bool:
        """Move ``amount`` from ``source`` to ``target``. A balance is stored as
        ``"<amount>|<tag>"`` with a tag no other write uses, so every bank write is unique and
        the checker can tell a cas applied twice (its retry would report a value nobody wrote)."""
        # Debit: read, then cas; give up (nothing moved) on a failed cas or after a few tries.
        for attempt in range(5):
            if self.stop.is_set():
                return False
            read = self.perform(client, process, "get", *source, rng)
            if read.type != OK:
                time.sleep(rng.uniform(0.05, 0.3))
                continue
            if read.output is None:
                self.report.bank.append(f"account {source} vanished: {read.describe()}")
                return False
            balance = balance_of(read.output)
            if balance < amount:
                return False
            debited = f"{balance - amount}|{tag}-{attempt}"
            debit = self._definite(client, process, rng, "cas", *source, read.output, debited)
            if debit.type == INFO:
                self.report.bank.append(f"debit outcome never known: {debit.describe()}")
                return False
            if debit.type == OK and debit.output[0]:
                break
        else:
            return False
        # Credit: the money is in flight; retry until it lands (the run waits for it).
        while time.monotonic() < self.finish_by:
            read = self.perform(client, process, "get", *target, rng, retries=0)
            if read.type != OK or read.output is None:
                time.sleep(0.1)
                continue
            credit = self._definite(
                client,
                process,
                rng,
                "cas",
                *target,
                read.output,
                f"{balance_of(read.output) + amount}|{tag}+{next(self._credits)}",
            )
            if credit.type == OK:
                if credit.output[0]:
                    return True
                continue  # another transfer changed the balance first: read it again
            if credit.type == INFO:
                # Retrying with a new request id could credit twice: the outcome must be known.
                self.report.bank.append(f"credit outcome never known: {credit.describe()}")
                return False
        self.report.bank.append(f"transfer of {amount} from {source} to {target} never credited")
        return False

    # ------------------------------------------------------------------ the end

    def converge(self, timeout: float = 60.0) -> None:
        """Every node serves, every group has a leader, every node applied the same prefix."""
        cluster = self.cluster
        assert cluster is not None
        for group in self.settings.groups:
            cluster.wait_for_leader(group, timeout)
        client = self.client(reads="linearizable")
        rng = random.Random(0)
        deadline = time.monotonic() + timeout
        for node in cluster.nodes:  # a linearizable read on each node: it catches up
            for group in self.settings.groups:
                while client.get(node, group, "converge").type != OK:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"node {node} group {group} does not answer reads")
                    time.sleep(rng.uniform(0.1, 0.3))
        stable = 0
        while stable < 3:
            if time.monotonic() > deadline:
                raise AssertionError("the nodes did not converge on one applied prefix")
            applied = {
                node: tuple((g["group_id"], g["applied"]) for g in cluster.status(node)["groups"])
                for node in cluster.nodes
            }
            stable = stable + 1 if len(set(applied.values())) == 1 else 0
            time.sleep(0.2)

    def local_values(self, node: int, group: int) -> dict[str, str]:
        """The KV rows of ``group`` in node ``node``'s own database."""
        assert self.cluster is not None
        if self.cluster.backend == "postgres":
            import psycopg

            url = f"{self.cluster.postgres_url}/{self.cluster.database_prefix}_n{node}"
            with psycopg.connect(url) as conn:
                query = "SELECT key, value FROM kvstore_entry WHERE group_id = %s"
                return dict(conn.execute(query, [group]).fetchall())
        path = self.cluster.folder / "data" / f"node{node}.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
            rows = conn.execute(
                "SELECT key, value FROM kvstore_entry WHERE group_id = ?", [group]
            ).fetchall()
        return dict(rows)

    def final_reads(self) -> dict[str, dict[int, str | None]]:
        """Linearizable reads of every key on every node (into the history), and every node's
        local value of every key (returned: key -> node -> value)."""
        cluster = self.cluster
        assert cluster is not None
        keys = sorted(self.keys.used | set(self.accounts))
        finish = time.monotonic() + 60

        def read_all(node: int) -> None:
            client = self.client(reads="linearizable")
            rng = random.Random(node)
            for group, key in keys:
                self.perform(
                    client,
                    f"final{node}",
                    "get",
                    group,
                    key,
                    rng,
                    until=lambda: time.monotonic() > finish,
                )

        with ThreadPoolExecutor(len(cluster.nodes)) as pool:
            list(pool.map(read_all, cluster.nodes))
        for _attempt in range(5):  # an indeterminate command may still be landing: settle
            local = {
                (node, group): self.local_values(node, group)
                for node in cluster.nodes
                for group in self.settings.groups
            }
            per_group = [[local[(n, g)] for n in cluster.nodes] for g in self.settings.groups]
            if all(all(rows == views[0] for rows in views) for views in per_group):
                break
            time.sleep(1.0)
            self.converge()
        finals: dict[str, dict[int, str | None]] = {}
        for group, key in keys:
            finals[f"{group}/{key}"] = {
                node: local[(node, group)].get(key) for node in cluster.nodes
            }
        # Keys nobody wrote must be absent everywhere.
        for (node, group), rows in local.items():
            for key in rows:
                if (group, key) not in self.keys.used and (group, key) not in self.accounts:
                    finals.setdefault(f"{group}/{key}", {})[node] = rows[key]
        return finals

    def save_history(self, path: Path) -> Path:
        """Every op and fault as JSON lines (times in ns of the test's monotonic clock)."""
        with path.open("w") as out:
            for op in self.history.snapshot():
                record = {k: v for k, v in vars(op).items()}
                record["output"] = repr(op.output) if op.f == "cas" else op.output
                out.write(json.dumps({"op": record}) + "\n")
            for fault in self.history.faults:
                out.write(json.dumps({"fault": vars(fault)}) + "\n")
        return path

    def check(self, finals: dict[str, dict[int, str | None]]) -> None:
        cluster = self.cluster
        assert cluster is not None and self.nemesis is not None
        report = self.report
        ops = self.history.snapshot()
        report.ops = Counter(op.type for op in ops)
        report.by_f = Counter(op.f for op in ops)
        report.ok_by_f = Counter(
            op.f for op in ops if op.type == OK and re.fullmatch(r"c[0-9]+", op.process)
        )
        report.faults = Counter(self.nemesis.injected)
        report.skipped_faults = Counter(self.nemesis.skipped)
        report.transfers = next(self._transfers)
        report.crashes = list(self.nemesis.crashes)
        report.storage_exits = list(self.nemesis.storage_exits)
        report.nemesis_errors = list(self.nemesis.errors)
        report.availability = availability(ops, self.history.faults)
        for node_id, process in cluster.nodes.items():
            if not process.log_path.exists():
                continue
            spans = self.nemesis.expected_log_spans.get(node_id, [])
            for offset, line, entry in log_entries(process.log_path):
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    if expected_database_error(offset, entry, spans):
                        report.expected_log_errors += 1
                        continue
                    text = re.sub(r"^[0-9-]+ [0-9:,]+ ", "", line)[:200]
                    report.node_errors.append(f"node {node_id}: {text}")
                elif "database was new but the group has a history" in line:
                    report.rebuilt += 1
        started = time.perf_counter()
        report.linearizability = checker.check(ops, time_limit=self.settings.check_time_limit)
        report.lost_writes = checker.lost_writes(ops, finals)
        total = self.settings.bank_balance * len(self.accounts)
        for node in cluster.nodes if self.accounts else ():
            balances = [finals[f"{g}/{k}"][node] for g, k in self.accounts]
            amounts = [balance_of(b) if b is not None else None for b in balances]
            if None in amounts or sum(amounts) != total:  # type: ignore[arg-type]
                report.bank.append(f"node {node}: balances {balances} do not add up to {total}")
        for group in self.settings.groups:
            logs = {node: cluster.chosen_log(node, group) for node in cluster.nodes}
            reference = max(logs.values(), key=len)
            for node, log in logs.items():
                if log != reference[: len(log)]:
                    first = next(
                        i for i, (a, b) in enumerate(zip(log, reference, strict=False)) if a != b
                    )
                    report.agreement.append(
                        f"group {group}: node {node} chose {log[first]} where another node "
                        f"chose {reference[first]}"
                    )
        for node in cluster.nodes:
            status = cluster.status(node)
            report.windows_compared += status["result_digests"]["windows_compared"]
            report.agreement.extend(
                f"node {node}: group {found['group_id']}: results for instances "
                f"{found['first']}..{found['last']} differ from node {found['peer']}'s"
                for found in status["divergences"]
            )
        report.check_seconds = time.perf_counter() - started
