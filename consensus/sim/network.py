"""A simulated network: per-message delay, loss, duplication and reordering, and partitions
(one-way ones too). Every decision comes from the simulation's single seeded PRNG."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from consensus.core import Message


@dataclass
class NetworkFaults:
    loss: float = 0.05
    duplicate: float = 0.03
    min_delay: int = 1
    max_delay: int = 12
    long_delay: float = 0.02
    """Chance that a message is held back far longer than usual (reordering across ticks)."""
    long_delay_max: int = 200


@dataclass
class Network:
    rng: random.Random
    faults: NetworkFaults = field(default_factory=NetworkFaults)
    blocked: set[tuple[int, int]] = field(default_factory=set)
    """Directed links that drop everything: (src, dst)."""
    clogged: dict[int, int] = field(default_factory=dict)
    """Nodes whose outgoing messages are held until the given time and then all arrive late:
    FoundationDB's "swizzle-clogging", which delivers stale ballots long after they were sent."""

    def delays(self, msg: Message, now: int) -> list[int]:
        """When (relative to now) copies of ``msg`` arrive; empty when it is lost."""
        if (msg.src, msg.dst) in self.blocked:
            return []
        until = self.clogged.get(msg.src, 0)
        if until > now:
            return [until - now + self.rng.randint(0, self.faults.max_delay)]
        faults = self.faults
        rng = self.rng
        if rng.random() < faults.loss:
            return []
        copies = 2 if rng.random() < faults.duplicate else 1
        result = []
        for _ in range(copies):
            if rng.random() < faults.long_delay:
                result.append(rng.randint(faults.max_delay, faults.long_delay_max))
            else:
                result.append(rng.randint(faults.min_delay, faults.max_delay))
        return result

    def partition(self, nodes: list[int]) -> str:
        """Cut the cluster at random: a split into two sides, an isolated node, or one-way links."""
        rng = self.rng
        kind = rng.choice(("split", "isolate", "one-way"))
        if kind == "split":
            shuffled = nodes[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(nodes) - 1)
            left, right = shuffled[:cut], shuffled[cut:]
            for a in left:
                for b in right:
                    self.blocked.add((a, b))
                    self.blocked.add((b, a))
            return f"split {sorted(left)}|{sorted(right)}"
        if kind == "isolate":
            lonely = rng.choice(nodes)
            for other in nodes:
                if other != lonely:
                    self.blocked.add((lonely, other))
                    self.blocked.add((other, lonely))
            return f"isolate {lonely}"
        src, dst = rng.sample(nodes, 2)
        self.blocked.add((src, dst))
        return f"one-way {src}->{dst}"

    def clog(self, node_id: int, until: int) -> None:
        self.clogged[node_id] = until

    def heal(self) -> None:
        self.blocked.clear()
        self.clogged.clear()
