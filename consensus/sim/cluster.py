"""A whole cluster of real ``Replica`` objects in one thread, driven by a discrete-event clock.

One seeded PRNG decides everything: message delay, loss, duplication and reordering, partitions
(also one-way), client load on several groups, and crashes at any point of the Ready cycle,
including the dangerous one between persisting a Ready and sending its messages. A crash loses all
volatile state; only what a completed persist wrote (the fake disk) survives a restart. After the
chaos the network heals, every node restarts, and every submitted command must be chosen within a
bounded number of ticks.

The driver below is the simulator's copy of the runtime's Ready loop: persist, mark persisted,
send, apply, advance. The applier skips request ids it already applied (exactly-once). The checker
sees the votes a node sends on the network (``_send``) and those it gives itself as ``advance``
counts them (``_watch_own_votes``).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field, replace

from consensus.core import (
    Accept,
    Accepted,
    Command,
    InitialState,
    LearnReply,
    MemoryStorage,
    Message,
    Persist,
    Promise,
    Ready,
    RebuildInfo,
    RemoteProtocolError,
    Replica,
    ReplicaConfig,
)
from consensus.core.result_digest import ResultDigests

from .invariants import Checker, InvariantViolation
from .mutants import MUTANTS, Mutant
from .network import Network, NetworkFaults

TICK = 10
"""Simulated time units per replica tick; message delays are drawn in these units."""
DIGEST_WINDOW = 3
"""Instances per result digest window: small, so that windows end in every run."""


@dataclass(frozen=True)
class SimSettings:
    nodes: int = 3
    groups: int = 2
    steps: int = 400
    """Ticks of chaos before the network heals."""
    liveness_ticks: int = 600
    """After healing, every submitted command must be chosen and applied everywhere within this."""
    submit_rate: float = 0.25
    read_rate: float = 0.15
    """Per tick: chance that a client starts a linearizable read at a random node."""
    max_commands: int = 80
    client_retry_ticks: int = 40
    crash_rate: float = 0.01
    """Per tick: chance that the nemesis crashes a node at a random moment."""
    ready_crash_rate: float = 0.003
    """Per Ready and per crash point: chance of crashing exactly there."""
    restart_rate: float = 0.05
    partition_rate: float = 0.02
    heal_rate: float = 0.03
    clog_rate: float = 0.02
    clog_ticks: int = 60
    graceful_stop_rate: float = 0.0
    """Per tick: chance that a node leading a group stops gracefully: its replicas hand over
    (``Replica.hand_over``: ``TimeoutNow`` to a peer), the cluster runs 0 to ``stop_wait_ticks``
    ticks (the runtime's bounded wait), then it goes down, losing its volatile state like any
    crash."""
    deaf_stop_rate: float = 0.0
    """Per graceful stop: chance of a one-way partition at the worst moment: the node each group
    is handed over to cannot reach the stopping node (which still hears the others), so the
    stopping node goes on leading, and serving reads, unaware of the new leader until it is
    down or hears of it another way."""
    stop_wait_ticks: int = 5
    """A gracefully stopping node goes down 0 to this many ticks after handing over."""
    send_crash_rate: float = 0.0
    """Per batch of messages a Ready sends: chance that the node crashes part-way through it:
    the first few messages leave, the rest never do. A leader's Accepts go out before its own
    vote is written (the eager messages), so some peers may vote for a proposal whose proposer
    forgets it."""
    replay_ack_rate: float = 0.0
    """Per Accept a leader sends a peer: chance that the network delivers again, now, the last
    ``Accepted`` that peer sent this leader for the same instance in an older ballot: a
    duplicate held back across the leader's changes of ballot (and restarts)."""
    wipe_rate: float = 0.0
    """Per restart: chance that the node comes back with new, empty storage (a replaced disk):
    it must rebuild before it votes (core/rebuild.py)."""
    left_down: int = 0
    """Nodes (fewer than half) that stay down for good after healing while clients go on
    submitting for ``liveness_ticks``: a majority alone must apply every command within
    ``liveness_ticks // 3`` of its submission (or of the healing)."""
    election_ticks: int = 10
    """Election timeouts are drawn from ``election_ticks`` to twice that."""
    heartbeat_ticks: int = 2
    """A leader's heartbeat interval (below ``election_ticks``)."""
    mutant: str | None = None
    scenario: str = "chaos"
    """The name of the preset these settings came from (``scenario_settings``), for repro lines."""


SCENARIOS: dict[str, dict[str, float | int]] = {
    "chaos": {},
    "hand-over-reads": {
        # Leaders stop gracefully often, and the node each group is handed over to cannot
        # reach the stopping one: it goes on leading and answering reads, unaware of its
        # successor, while clients read everywhere and submit a steady load.
        "graceful_stop_rate": 0.1,
        "deaf_stop_rate": 1.0,
        "stop_wait_ticks": 30,
        "read_rate": 1.0,
        "submit_rate": 0.5,
        "max_commands": 300,
        # Heartbeats far apart: the confirmation round a read waits for is all that keeps such
        # a leader from answering with an index older than its successor has applied.
        "election_ticks": 30,
        "heartbeat_ticks": 25,
        # No other faults: they mostly end the race first (a crash, a partition of the others).
        "crash_rate": 0.0,
        "ready_crash_rate": 0.0,
        "partition_rate": 0.0,
        "clog_rate": 0.0,
    },
    "stale-acks": {
        # Leaders crash part-way through sending their Accepts, before their own vote is
        # written, so a minority may hold votes for a proposal its proposer forgot; they restart
        # at once and often lead again; and whenever a leader sends a peer an Accept, the
        # network hands the leader again that peer's last older ack of the same instance.
        "send_crash_rate": 0.2,
        "replay_ack_rate": 1.0,
        "restart_rate": 1.0,
        # The preferred leader (odd groups) campaigns within the first fifth of the range: a
        # long timeout gives it the lead over the others, whose timers started before its
        # restart and its restart audit, so it mostly leads again.
        "election_ticks": 30,
        # No other faults: they mostly end the race first (another node takes over).
        "crash_rate": 0.0,
        "partition_rate": 0.0,
        "clog_rate": 0.0,
    },
}
"""Named sets of ``SimSettings`` (``--scenario``): "chaos", every fault at random, is the
default; the others aim at one narrow race that the chaos rarely or never hits."""


def scenario_settings(scenario: str, **settings: object) -> SimSettings:
    """``SimSettings`` of ``scenario``, with ``settings`` (nodes, groups, mutant...) on top."""
    return SimSettings(**{**SCENARIOS[scenario], **settings, "scenario": scenario})  # type: ignore[arg-type]


@dataclass
class GroupDisk:
    """What survives a crash for one group on one node: the acceptor's storage and the applier."""

    storage: MemoryStorage = field(default_factory=lambda: MemoryStorage(rebuilding=True))
    """New storage, as a new database: the node starts by asking its peers (core/rebuild.py)."""
    applied_upto: int = 0
    applied_ids: set[str] = field(default_factory=set)
    applied_count: int = 0
    digests: ResultDigests = field(default_factory=lambda: ResultDigests(DIGEST_WINDOW))
    """The result digests, as a node keeps them with its applied index."""


@dataclass
class SimNode:
    node_id: int
    disks: dict[int, GroupDisk]
    replicas: dict[int, Replica] = field(default_factory=dict)
    up: bool = False


@dataclass
class SimResult:
    seed: int
    violation: str | None
    chosen: int
    messages: int
    crashes: int
    partitions: int
    digest: str


class Crash(Exception):
    """Raised inside the Ready loop to crash the node at that exact point."""


class SimCluster:
    def __init__(self, seed: int, settings: SimSettings) -> None:
        self.seed = seed
        self.settings = settings
        self.rng = random.Random(seed)
        self.mutant: Mutant = MUTANTS[settings.mutant] if settings.mutant else MUTANTS["none"]
        self.node_ids = list(range(1, settings.nodes + 1))
        self.group_ids = list(range(1, settings.groups + 1))
        self.network = Network(self.rng, NetworkFaults())
        self.checker = Checker(quorum=settings.nodes // 2 + 1)
        self.nodes = {
            node_id: SimNode(node_id, {group_id: GroupDisk() for group_id in self.group_ids})
            for node_id in self.node_ids
        }
        self.now = 0
        self.chaos = True
        self._seq = 0
        self._events: list[tuple[int, int, Message]] = []
        self.outstanding: dict[str, tuple[int, Command, int]] = {}  # rid -> (group, cmd, sent at)
        self.acks_carried: dict[tuple[int, int, int, int], Accepted] = {}
        """(group, voter, leader, instance) -> the last Accepted the network carried (only with
        ``replay_ack_rate``)."""
        self.commands = 0
        self.submitted_at: dict[str, int] = {}
        self.reads = 0
        self.messages = 0
        self.applied_top: dict[int, int] = {}
        """Per group: the highest instance applied anywhere (acknowledged to some client)."""
        self.read_floor: dict[tuple[int, int, int], int] = {}
        """(node, group, read id) -> the index a read started then must reach to be linearizable."""
        self.crashes = 0
        self.partitions = 0
        self.wipes = 0
        self.graceful_stops = 0
        for node in self.nodes.values():
            self._start(node)

    # ------------------------------------------------------------------ run

    def run(self) -> SimResult:
        violation = None
        try:
            for _ in range(self.settings.steps):
                self._chaos_tick()
            self._heal()
            if self.settings.left_down:
                self._load_with_a_minority_down()
            self._check_liveness()
        except InvariantViolation as error:
            violation = str(error)
        return SimResult(
            seed=self.seed,
            violation=violation,
            chosen=len(self.checker.chosen),
            messages=self.messages,
            crashes=self.crashes,
            partitions=self.partitions,
            digest=self._digest(),
        )

    def _chaos_tick(self) -> None:
        self._nemesis()
        self._client_load()
        self._advance_clock()

    def _advance_clock(self) -> None:
        """Deliver every message due before the next tick, then tick every live node."""
        end = self.now + TICK
        while self._events and self._events[0][0] < end:
            when, _seq, msg = heapq.heappop(self._events)
            self.now = when
            self._deliver(msg)
        self.now = end
        for node in self.nodes.values():
            if node.up:
                for group_id, replica in node.replicas.items():
                    replica.tick()
                    self._drain(node, group_id)

    def _heal(self) -> None:
        self.chaos = False
        self.network.heal()
        self.network.faults = NetworkFaults(loss=0.0, duplicate=0.0, long_delay=0.0)
        for node in self.nodes.values():
            if not node.up:
                self._start(node)
        if self.settings.left_down:
            if not 0 < 2 * self.settings.left_down < len(self.node_ids):
                raise ValueError("left_down must leave a majority of the nodes up")
            self._finish_rebuilding()
            for node_id in self.rng.sample(self.node_ids, self.settings.left_down):
                self._crash(self.nodes[node_id])

    def _finish_rebuilding(self) -> None:
        """Before a minority goes down for good, every node must vote: a node with new storage
        needs every peer's answer and a majority of the others to choose up to its target
        (core/rebuild.py), which with a minority down may never come."""
        for _tick in range(self.settings.liveness_ticks // 3):
            if not any(
                replica.rebuilding
                for node in self.nodes.values()
                for replica in node.replicas.values()
            ):
                return
            self._advance_clock()
        raise InvariantViolation(
            f"liveness: nodes still rebuilding {self.settings.liveness_ticks // 3} ticks after "
            "healing with every node up"
        )

    def _load_with_a_minority_down(self) -> None:
        """Clients keep submitting to the majority that is up; no command may wait long."""
        healed = self.now
        limit = self.settings.liveness_ticks // 3 * TICK
        for _tick in range(self.settings.liveness_ticks):
            self._client_load(limited=False)
            self._advance_clock()
            waiting = [(max(self.submitted_at[rid], healed), rid) for rid in self.outstanding]
            if waiting and self.now - min(waiting)[0] > limit:
                down = sorted(n.node_id for n in self.nodes.values() if not n.up)
                raise InvariantViolation(
                    f"liveness with nodes {down} down: {min(waiting)[1]} not applied "
                    f"{limit // TICK} ticks after it was submitted"
                )

    def _check_liveness(self) -> None:
        for _tick in range(self.settings.liveness_ticks):
            self._resubmit_outstanding()
            self._advance_clock()
            if self._all_applied():
                return
        missing = sorted(self.outstanding)[:5]
        raise InvariantViolation(
            f"liveness: {len(self.outstanding)} commands not applied everywhere and "
            f"{len(self.read_floor)} reads unanswered {self.settings.liveness_ticks} ticks after "
            f"healing (e.g. {missing})"
        )

    def _all_applied(self) -> bool:
        if self.outstanding or self.read_floor:
            return False
        for group_id in self.group_ids:
            total = len(self.checker.applied_sequence.get(group_id, []))
            for node in self.nodes.values():
                if node.up and node.disks[group_id].applied_count != total:
                    return False
        return True

    # ------------------------------------------------------------------ faults and load

    def _nemesis(self) -> None:
        rng = self.rng
        settings = self.settings
        if rng.random() < settings.crash_rate:
            live = [node for node in self.nodes.values() if node.up]
            if live:
                self._crash(rng.choice(live))
        if rng.random() < settings.restart_rate:
            down = [node for node in self.nodes.values() if not node.up]
            if down:
                node = rng.choice(down)
                if rng.random() < settings.wipe_rate and self._may_wipe(node):
                    self._wipe(node)
                self._start(node)
        if rng.random() < settings.partition_rate and len(self.node_ids) > 1:  # 1: no network
            self.network.partition(self.node_ids)
            self.partitions += 1
        if rng.random() < settings.clog_rate:
            until = self.now + rng.randint(1, settings.clog_ticks) * TICK
            self.network.clog(rng.choice(self.node_ids), until)
        if rng.random() < settings.heal_rate:
            self.network.heal()
        # Only when asked: another draw would change every existing seed's run.
        if settings.graceful_stop_rate and rng.random() < settings.graceful_stop_rate:
            self._stop_gracefully()

    def _stop_gracefully(self) -> None:
        leaders = [
            node
            for node in self.nodes.values()
            if node.up and any(replica.is_leader() for replica in node.replicas.values())
        ]
        if not leaders:
            return
        node = self.rng.choice(leaders)
        # Only when asked: another draw would change every existing seed's run.
        deaf = (
            bool(self.settings.deaf_stop_rate) and self.rng.random() < self.settings.deaf_stop_rate
        )
        for group_id, replica in node.replicas.items():
            target = replica.hand_over()
            if deaf and target is not None:
                self.network.blocked.add((target, node.node_id))
            self._drain(node, group_id)
        for _tick in range(self.rng.randint(0, self.settings.stop_wait_ticks)):
            if deaf:  # clients go on meanwhile (only then: the other runs stay as they were)
                self._client_load()
            self._advance_clock()
        if node.up:  # (it may have crashed meanwhile)
            self.graceful_stops += 1
            self._crash(node)

    def _client_load(self, *, limited: bool = True) -> None:
        rng = self.rng
        if (
            not limited or self.commands < self.settings.max_commands
        ) and rng.random() < self.settings.submit_rate:
            self.commands += 1
            group_id = rng.choice(self.group_ids)
            command = Command(f"s{self.seed}-c{self.commands}", f"v{rng.randrange(1_000_000)}")
            self.checker.on_submit(command)
            self.outstanding[command.request_id] = (group_id, command, self.now)
            self.submitted_at[command.request_id] = self.now
            self._submit(group_id, command)
        self._resubmit_outstanding()
        if rng.random() < self.settings.read_rate:
            self._start_read(rng.choice(self.group_ids))

    def _start_read(self, group_id: int) -> None:
        live = [node for node in self.nodes.values() if node.up]
        if not live:
            return
        node = self.rng.choice(live)
        self.reads += 1
        self.read_floor[(node.node_id, group_id, self.reads)] = self.applied_top.get(group_id, 0)
        node.replicas[group_id].read_index(self.reads)
        self._drain(node, group_id)

    def _resubmit_outstanding(self) -> None:
        """Clients retry with the same request id, maybe at another node (as PaxosClient does)."""
        horizon = self.now - self.settings.client_retry_ticks * TICK
        for request_id, (group_id, command, sent_at) in list(self.outstanding.items()):
            if sent_at <= horizon:
                self.outstanding[request_id] = (group_id, command, self.now)
                self._submit(group_id, command)

    def _submit(self, group_id: int, command: Command) -> None:
        live = [node for node in self.nodes.values() if node.up]
        if not live:
            return
        node = self.rng.choice(live)
        node.replicas[group_id].submit(command)
        self._drain(node, group_id)

    # ------------------------------------------------------------------ nodes

    def _start(self, node: SimNode) -> None:
        node.up = True
        for group_id, disk in node.disks.items():
            self._replay(node, group_id, disk)
            config = ReplicaConfig(
                node_id=node.node_id,
                node_ids=tuple(self.node_ids),
                group_id=group_id,
                election_ticks=self.settings.election_ticks,
                heartbeat_ticks=self.settings.heartbeat_ticks,
                learn_ticks=8,
                retry_ticks=6,
                window=4,
                max_batch_commands=6,
                # Odd groups propose at most two instances per Ready, even ones a whole window.
                max_proposals_per_ready=2 if group_id % 2 else 4,
                learn_batch=8,
                cache_size=6,
                # Odd groups also bound the cache by bytes (a few small values), even ones not.
                cache_bytes=120 if group_id % 2 else 8 * 1024 * 1024,
                # Odd groups prefer a node (leader hand-over is exercised), even groups do not.
                preferred_leader=(
                    self.node_ids[(group_id - 1) % len(self.node_ids)] if group_id % 2 else None
                ),
            )
            self.checker.on_recover(node.node_id, group_id, disk.storage)
            state: InitialState = disk.storage.initial_state(recent=4)
            if not self.mutant.audit_restarts:
                state = replace(state, audit=False)
            replica = self.mutant.replica_class(
                config,
                state,
                random.Random(self.rng.getrandbits(64)),
                first_read_token=self.rng.getrandbits(48),
            )
            self.checker.on_restart(node.node_id, group_id, replica.promised)
            self._watch_own_votes(node, group_id, replica)
            node.replicas[group_id] = replica

    def _watch_own_votes(self, node: SimNode, group_id: int, replica: Replica) -> None:
        """Show the checker each vote the replica gives itself as it counts it (rule 4 of
        invariants.py). Such a vote never leaves the node: the replica holds back its Promise or
        Accepted to itself and feeds it to its own ``step`` in ``advance`` (the only way a
        message from a node to itself reaches ``step``), where it counts towards a candidacy's
        or an instance's majority. Whatever the driver did (a broken one in ``mutants.py``),
        the disk then must hold it. Draws nothing from the PRNG: every seed runs as before."""
        step = replica.step
        checker = self.checker
        node_id = node.node_id

        def step_counting_own_votes(msg: Message) -> None:
            if msg.src == node_id and msg.dst == node_id and isinstance(msg, Promise | Accepted):
                instance = msg.instance if isinstance(msg, Accepted) else None
                storage = node.disks[group_id].storage
                checker.on_own_vote_counted(node_id, group_id, msg.ballot, instance, storage)
            step(msg)

        replica.step = step_counting_own_votes  # type: ignore[method-assign]

    def _replay(self, node: SimNode, group_id: int, disk: GroupDisk) -> None:
        """Apply what was chosen and persisted but not yet applied before the crash."""
        upto = disk.storage.chosen_upto()
        for entry in disk.storage.chosen_values(disk.applied_upto + 1, upto):
            self._apply(node, group_id, disk, entry.instance, entry.value)

    def _may_wipe(self, node: SimNode) -> bool:
        """Whether replacing this node's disk leaves a majority of nodes whose storage votes.
        Nodes with new storage that have not rebuilt yet know nothing: with a majority of them
        at once (two of three), a majority's memory is gone, which no protocol can recover from
        (and which they cannot tell from a new cluster)."""
        new = sum(
            1
            for other in self.nodes.values()
            if other is not node and any(disk.storage.rebuilding for disk in other.disks.values())
        )
        return 2 * (new + 1) < len(self.node_ids)

    def _wipe(self, node: SimNode) -> None:
        """Replace a down node's disk: every promise, vote, chosen mark and applied command is
        gone. The invariants about its own durable state start over; agreement, order and reads
        are what a node that voted with new storage too early would break."""
        node.disks = {
            group_id: GroupDisk(MemoryStorage(rebuilding=self.mutant.rebuild_new_storage))
            for group_id in self.group_ids
        }
        self.checker.forget_node(node.node_id)
        self.wipes += 1

    def _crash(self, node: SimNode) -> None:
        node.up = False
        node.replicas = {}
        for key in [key for key in self.read_floor if key[0] == node.node_id]:
            del self.read_floor[key]  # the reader's connection died with the node
        self.crashes += 1

    def _deliver(self, msg: Message) -> None:
        node = self.nodes[msg.dst]
        if not node.up:
            return
        replica = node.replicas[msg.group_id]
        try:
            replica.step(msg)
        except RemoteProtocolError:
            return
        if isinstance(msg, RebuildInfo) and replica.stale_storage_reason:
            # Nothing here restores old storage (a wipe makes new storage, which rebuilds
            # without an audit): every "older than its votes" is a false alarm (core/audit.py).
            raise InvariantViolation(
                f"node {node.node_id} group {msg.group_id}: its intact storage was found older "
                f"than its votes: {replica.stale_storage_reason}"
            )
        self._drain(node, msg.group_id)

    def _send(self, msg: Message) -> None:
        self.messages += 1
        if isinstance(msg, Promise):
            self.checker.on_vote_sent(msg.src, msg.group_id, msg.ballot)
        elif isinstance(msg, Accepted):
            self.checker.on_vote_sent(msg.src, msg.group_id, msg.ballot, msg.instance)
        if self.settings.replay_ack_rate:  # (no draw otherwise: every other run stays the same)
            self._replay_stale_ack(msg)
        self._schedule(msg)

    def _schedule(self, msg: Message) -> None:
        for delay in self.network.delays(msg, self.now):
            self._seq += 1
            heapq.heappush(self._events, (self.now + delay, self._seq, msg))

    def _replay_stale_ack(self, msg: Message) -> None:
        """Remember the acks the network carries; when a leader proposes in an instance, maybe
        deliver again the older ack the receiver sent it for that instance (``SimSettings``)."""
        if isinstance(msg, Accepted):
            self.acks_carried[(msg.group_id, msg.src, msg.dst, msg.instance)] = msg
        elif isinstance(msg, Accept) and self.chaos:
            old = self.acks_carried.get((msg.group_id, msg.dst, msg.src, msg.instance))
            if (
                old is not None
                and old.ballot < msg.ballot
                and self.rng.random() < self.settings.replay_ack_rate
            ):
                self._schedule(old)

    # ------------------------------------------------------------------ the Ready loop

    def _drain(self, node: SimNode, group_id: int) -> None:
        try:
            while node.up and (replica := node.replicas[group_id]).has_ready():
                ready = replica.ready()
                for vote in ready.persist.accepted:  # cast now, durable or not (rule 7)
                    self.checker.on_vote_cast(
                        node.node_id, group_id, vote.instance, vote.ballot, vote.value
                    )
                self.mutant.handle_ready(self, node, group_id, replica, ready)
        except Crash:
            self._crash(node)

    def maybe_crash(self) -> None:
        if self.chaos and self.rng.random() < self.settings.ready_crash_rate:
            raise Crash

    def persist(self, node: SimNode, group_id: int, ready: Ready) -> None:
        self.write(node, group_id, ready.persist)

    def write(self, node: SimNode, group_id: int, persist: Persist) -> None:
        """One write to the node's disk for the group (a Ready's, or a broken driver's own)."""
        node.disks[group_id].storage.apply(persist)
        if persist.promised is not None:
            self.checker.on_persisted_promise(node.node_id, group_id, persist.promised)
        for entry in persist.chosen:
            self.checker.on_chosen(node.node_id, group_id, entry.instance, entry.value)

    def send_all(self, messages: tuple[Message, ...]) -> None:
        rate = self.settings.send_crash_rate
        # (No draw without the option: every other run stays the same.)
        if (
            rate
            and self.chaos
            and any(isinstance(msg, Accept) for msg in messages)
            and self.rng.random() < rate
        ):
            for msg in messages[: self.rng.randrange(len(messages))]:
                self._send(msg)
            raise Crash
        for msg in messages:
            self._send(msg)

    def apply_and_serve(self, node: SimNode, group_id: int, ready: Ready) -> None:
        disk = node.disks[group_id]
        for entry in ready.committed:
            if entry.instance != disk.applied_upto + 1:
                raise InvariantViolation(
                    f"order: node {node.node_id} group {group_id} got instance {entry.instance} "
                    f"to apply after {disk.applied_upto}"
                )
            self._apply(node, group_id, disk, entry.instance, entry.value)
        for read_state in ready.reads:
            floor = self.read_floor.pop((node.node_id, group_id, read_state.read_id), None)
            if floor is not None and read_state.index < floor:
                raise InvariantViolation(
                    f"linearizable read: node {node.node_id} group {group_id} got read index "
                    f"{read_state.index}, but instance {floor} was applied before the read began"
                )
        for read in ready.log_reads:
            entries = disk.storage.chosen_values(read.first_instance, read.last_instance)
            self._send(
                LearnReply(
                    group_id=group_id,
                    src=node.node_id,
                    dst=read.dst,
                    entries=tuple(entries),
                    chosen_upto=disk.storage.chosen_upto(),
                )
            )

    def _apply(
        self,
        node: SimNode,
        group_id: int,
        disk: GroupDisk,
        instance: int,
        value: tuple[Command, ...],
    ) -> None:
        self.checker.on_chosen(node.node_id, group_id, instance, value)
        results: list[tuple[int, bytes | None]] = []
        for command in value:
            if command.request_id in disk.applied_ids:
                continue  # a retried command chosen twice: apply once
            disk.applied_ids.add(command.request_id)
            self.checker.on_applied(node.node_id, group_id, disk.applied_count, command.request_id)
            result = self.mutant.result_of(node.node_id, command.request_id, disk.applied_count)
            results.append((instance, result))
            disk.applied_count += 1
            self.outstanding.pop(command.request_id, None)
        disk.applied_upto = instance
        disk.digests.feed(group_id, (instance,), results)
        for window in disk.digests.take_checkpoints():
            self.checker.on_result_window(node.node_id, window)
        if instance > self.applied_top.get(group_id, 0):
            self.applied_top[group_id] = instance

    def _digest(self) -> str:
        text = repr(sorted(self.checker.chosen.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_seed(seed: int, settings: SimSettings) -> SimResult:
    return SimCluster(seed, settings).run()
