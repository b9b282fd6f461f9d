"""An in-memory cluster for the core's rule-by-rule tests: real replicas, a message list instead of
a network, a MemoryStorage per replica, and the runtime's Ready loop. Tests drop, hold or reorder
messages by hand, like etcd raft's ``network`` test type."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from consensus.core import (
    ChosenEntry,
    Command,
    LearnReply,
    MemoryStorage,
    Message,
    PreVote,
    Ready,
    Replica,
    ReplicaConfig,
)

Filter = Callable[[Message], bool]
"""Returns True for messages to drop."""


def drain(replica: Replica) -> list[Message]:
    """Persist-and-send every Ready of one replica (the runtime's loop, without a disk); return
    what it sent (for single-replica tests)."""
    sent: list[Message] = []
    while replica.has_ready():
        ready = replica.ready()
        ready.mark_persisted()
        sent += [*ready.eager_messages, *ready.messages]
        replica.advance(ready)
    return sent


def make_config(node_id: int, nodes: int = 3, **overrides: int) -> ReplicaConfig:
    values = {"election_ticks": 10, "heartbeat_ticks": 2, "learn_ticks": 5, "retry_ticks": 4}
    values.update(overrides)
    return ReplicaConfig(node_id=node_id, node_ids=tuple(range(1, nodes + 1)), **values)


@dataclass
class Harness:
    nodes: int = 3
    overrides: dict[str, int] = field(default_factory=dict)
    replicas: dict[int, Replica] = field(default_factory=dict)
    storage: dict[int, MemoryStorage] = field(default_factory=dict)
    applied: dict[int, list[ChosenEntry]] = field(default_factory=dict)
    in_flight: list[Message] = field(default_factory=list)
    readies: dict[int, list[Ready]] = field(default_factory=dict)
    drop: Filter = lambda msg: False
    seed: int = 0
    """Varies the replicas' random election timeouts (0: the same every run, as before)."""
    starts: int = 0
    """Replicas started so far: each start seeds its random source differently, as a restarted
    node's must be (candidacy nonces and rebuild tokens must not repeat)."""
    audit: bool = False
    """Whether replicas started on storage they had audit it first (core/audit.py), as the
    runtime's and the simulator's do; the rule tests start them voting at once."""

    def __post_init__(self) -> None:
        for node_id in range(1, self.nodes + 1):
            self.storage[node_id] = MemoryStorage()
            self.applied[node_id] = []
            self.readies[node_id] = []
            self.start(node_id)

    def start(self, node_id: int) -> Replica:
        restart = self.starts - self.nodes + 1 if self.starts >= self.nodes else 0
        self.starts += 1
        replica = Replica(
            make_config(node_id, self.nodes, **self.overrides),
            replace(self.storage[node_id].initial_state(), audit=self.audit),
            random.Random(node_id + 1000 * self.seed + 1_000_000 * restart),
        )
        self.replicas[node_id] = replica
        return replica

    def process(self, node_id: int) -> None:
        """Run the Ready loop of one replica until it has nothing more to say."""
        replica = self.replicas[node_id]
        while replica.has_ready():
            ready = replica.ready()
            self.readies[node_id].append(ready)
            self.in_flight.extend(m for m in ready.eager_messages if not self.drop(m))
            self.storage[node_id].apply(ready.persist)
            ready.mark_persisted()
            self.in_flight.extend(m for m in ready.messages if not self.drop(m))
            self.applied[node_id].extend(ready.committed)
            for read in ready.log_reads:
                entries = self.storage[node_id].chosen_values(
                    read.first_instance, read.last_instance
                )
                self.in_flight.append(
                    LearnReply(
                        group_id=replica.group_id,
                        src=node_id,
                        dst=read.dst,
                        entries=tuple(entries),
                        chosen_upto=self.storage[node_id].chosen_upto(),
                    )
                )
            replica.advance(ready)

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Deliver messages (and the replies they cause) until none are left."""
        for node_id in self.replicas:
            self.process(node_id)
        for _ in range(max_rounds):
            if not self.in_flight:
                return
            batch, self.in_flight = self.in_flight, []
            for msg in batch:
                if msg.dst in self.replicas and not self.drop(msg):
                    self.replicas[msg.dst].step(msg)
                    self.process(msg.dst)
        raise AssertionError("the cluster did not go quiet")

    def tick(self, node_id: int, times: int = 1) -> None:
        for _ in range(times):
            self.replicas[node_id].tick()
        self.process(node_id)

    def tick_all(self, times: int = 1) -> None:
        for _ in range(times):
            for node_id in self.replicas:
                self.replicas[node_id].tick()
            self.stabilize()

    def elect(self, node_id: int) -> Replica:
        """Time out ``node_id`` so it asks for a pre-vote and campaigns; deliver everything."""
        replica = self.replicas[node_id]
        for _ in range(200):  # a Nack from a higher promise means: campaign again, higher
            replica.tick()
            self.process(node_id)
            asking = any(isinstance(m, PreVote) and m.src == node_id for m in self.in_flight)
            if asking or replica.role.value == "candidate":
                self.stabilize()
                if replica.is_leader():
                    return replica
        raise AssertionError(f"node {node_id} did not win: {replica.role}")

    def take(self, kind: type[Message]) -> list[Message]:
        """Remove and return the in-flight messages of one type (to hold them back)."""
        taken = [m for m in self.in_flight if isinstance(m, kind)]
        self.in_flight = [m for m in self.in_flight if not isinstance(m, kind)]
        return taken

    def submit(self, node_id: int, payload: str, request_id: str | None = None) -> Command:
        command = Command(request_id or f"r-{payload}", payload)
        self.replicas[node_id].submit(command)
        self.process(node_id)
        return command

    def applied_payloads(self, node_id: int) -> list[str]:
        return [c.payload for entry in self.applied[node_id] for c in entry.value]
