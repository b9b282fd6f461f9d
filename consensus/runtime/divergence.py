"""Comparing this node's result digests with its peers': the alarm for state machines that differ.

Each node digests its state machines' results window by window of the log
(``result_digest.py``) and sends every finished window's digest to its peers (``ResultDigest``).
A node compares a peer's digest with its own for the same window: at once if it finished that
window itself, else when it gets there (it keeps the peer's latest; it need not compare every
window, the next one will do). Windows that fell out of ``KEEP`` are not compared: a node that
catches up from far behind checks the windows its peers finish after it is back.

A difference is an alarm, as in etcd (whose ``CORRUPT`` alarm makes members unhealthy): the
node logs it once per group and peer, says it in ``/readyz`` (unready: a load balancer should
stop sending it reads it may answer from state the others do not have) and ``/api/status/``,
and counts it in ``/metrics``. Which node is the odd one is for the operator to judge; each
node's ``/api/status/`` names the peers it disagrees with. The alarm stays until the node
restarts. It is best effort: a digest lost with a link is not sent again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from consensus.core import ResultDigest

from .result_digest import Checkpoint

logger = logging.getLogger("consensus.runtime")

KEEP = 16
"""Finished windows a node remembers per group, for peers that report them later."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """This node's results for instances ``first .. last`` of a group differ from ``peer``'s."""

    group_id: int
    peer: int
    first: int
    last: int
    mine: int
    theirs: int
    detected_at: float
    """Wall-clock time (``time.time()``), for the operator."""

    def describe(self) -> str:
        return (
            f"group {self.group_id}: the state machine's results for instances "
            f"{self.first}..{self.last} differ from node {self.peer}'s (digest {self.mine:x} "
            f"against {self.theirs:x}): the nodes' state machines are not the same code, or "
            "not deterministic, and their state may differ"
        )

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class DivergenceCheck:
    def __init__(self, node_id: int, peers: Iterable[int], keep: int = KEEP) -> None:
        self.node_id = node_id
        self.peers = sorted(peer for peer in peers if peer != node_id)
        self.keep = keep
        self._mine: dict[int, OrderedDict[int, Checkpoint]] = {}
        self._claims: dict[tuple[int, int], ResultDigest] = {}
        """(group, peer) -> the peer's latest digest of a window this node has not finished."""
        self._found: dict[tuple[int, int], Divergence] = {}
        self._windows_differ: set[int] = set()  # peers told about, once each
        self.compared = 0
        """Windows compared with a peer's (for tests and ``/api/status/``)."""

    def finished(self, checkpoints: Iterable[Checkpoint]) -> list[ResultDigest]:
        """This node finished these windows: compare with what peers already said of them, and
        return the messages that tell the peers."""
        messages: list[ResultDigest] = []
        for checkpoint in checkpoints:
            mine = self._mine.setdefault(checkpoint.group_id, OrderedDict())
            mine[checkpoint.last] = checkpoint
            while len(mine) > self.keep:
                mine.popitem(last=False)
            for peer in self.peers:
                claim = self._claims.get((checkpoint.group_id, peer))
                if claim is not None and claim.instance <= checkpoint.last:
                    del self._claims[(checkpoint.group_id, peer)]
                    self._compare(claim)
                messages.append(
                    ResultDigest(
                        group_id=checkpoint.group_id,
                        src=self.node_id,
                        dst=peer,
                        instance=checkpoint.last,
                        window=checkpoint.window,
                        digest=checkpoint.digest,
                    )
                )
        return messages

    def received(self, message: ResultDigest) -> None:
        """A peer finished a window: compare, or keep it until this node finishes it. (The
        caller checks the group is one of this node's.)"""
        if message.dst != self.node_id or message.src not in self.peers:
            return
        mine = self._mine.get(message.group_id)
        if mine and message.instance <= next(reversed(mine)):
            self._compare(message)  # finished here too (or too long ago to remember)
        else:
            self._claims[(message.group_id, message.src)] = message

    def _compare(self, theirs: ResultDigest) -> None:
        mine = self._mine.get(theirs.group_id, {}).get(theirs.instance)
        if mine is None:
            return
        if mine.window != theirs.window:
            if theirs.src not in self._windows_differ:
                self._windows_differ.add(theirs.src)
                logger.warning(
                    "node %s: node %s digests its results in windows of %s instances, this "
                    "node in windows of %s: their results are not compared (set the same "
                    "PAXOS_DIGEST_WINDOW on every node)",
                    self.node_id,
                    theirs.src,
                    theirs.window,
                    mine.window,
                )
            return
        self.compared += 1
        key = (theirs.group_id, theirs.src)
        if mine.digest == theirs.digest or key in self._found:
            return
        found = Divergence(
            theirs.group_id,
            theirs.src,
            mine.first,
            mine.last,
            mine.digest,
            theirs.digest,
            time.time(),
        )
        self._found[key] = found
        logger.error("node %s: %s", self.node_id, found.describe())

    def divergences(self) -> list[Divergence]:
        """Every (group, peer) whose results differed from this node's, first difference each."""
        return list(self._found.values())
