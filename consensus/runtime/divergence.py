"""Comparing this node's result digests with its peers': the alarm for state machines that differ.

Each node digests its state machines' results window by window of the log
(``consensus.core.result_digest``) and sends every finished window's digest to its peers
(``ResultDigest``).
A node compares a peer's digest with its own for the same window: at once if it finished that
window itself, else when it gets there (it keeps the peer's latest ``KEEP`` windows). Windows
older than that are not compared: a node that catches up from far behind checks the windows its
peers finish after it is back.

A difference is an alarm, as etcd's ``CORRUPT``: the node logs it once per group and peer, lists
it in ``/api/status/`` and sets it in ``/metrics``, until a later window that ends with a state
check agrees (the same state then: the odd node was rebuilt or repaired), or the node restarts.
A node that disagrees with a majority of the other nodes is also unready (``/readyz``: a load
balancer should stop sending it reads it answers from state the others do not have); the
others, whose peers mostly agree with them, stay ready and note it. It is best effort: a digest
lost with a link is not sent again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from consensus.core import ResultDigest
from consensus.core.result_digest import Checkpoint

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
    state_checked: bool = False
    """The window ended with a state check: the state there may be what differs."""

    def describe(self) -> str:
        where = (
            f"instance {self.last}"
            if self.first == self.last
            else f"instances {self.first}..{self.last}"
        )
        what = f"results for {where}"
        if self.state_checked:
            what += f", or its state at the state check in instance {self.last},"
        return (
            f"group {self.group_id}: the state machine's {what} differ from node {self.peer}'s "
            f"(digest {self.mine:016x} against {self.theirs:016x}): the nodes' state machines "
            "are not the same code or not deterministic, or a node's data was changed outside "
            "Paxos, and their state may differ"
        )

    def as_json(self) -> dict[str, object]:
        """For ``/api/status/``: digests as hex text (JSON numbers beyond 2**53 lose digits in
        JavaScript and jq)."""
        return {**asdict(self), "mine": f"{self.mine:016x}", "theirs": f"{self.theirs:016x}"}


class DivergenceCheck:
    """This node's finished windows and its peers', compared; what differed. On the loop."""

    def __init__(self, node_id: int, peers: Iterable[int], keep: int = KEEP) -> None:
        self.node_id = node_id
        self.peers = sorted(peer for peer in peers if peer != node_id)
        self.keep = keep
        self._mine: dict[int, OrderedDict[int, Checkpoint]] = {}
        self._claims: dict[tuple[int, int], OrderedDict[int, ResultDigest]] = {}
        """(group, peer) -> the peer's latest windows this node has not finished, by last
        instance: a peer ahead by a few windows is compared with when this node gets there."""
        self._found: dict[tuple[int, int], Divergence] = {}
        self._verdicts: dict[tuple[int, int], dict[int, bool]] = {}
        """(group, window's last instance) -> peer -> whether it digested the window alike
        (for the windows in ``_mine``)."""
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
                forgotten, _ = mine.popitem(last=False)
                self._verdicts.pop((checkpoint.group_id, forgotten), None)
            for peer in self.peers:
                claims = self._claims.get((checkpoint.group_id, peer))
                while claims and next(iter(claims)) <= checkpoint.last:
                    self._compare(claims.popitem(last=False)[1])
                messages.append(
                    ResultDigest(
                        group_id=checkpoint.group_id,
                        src=self.node_id,
                        dst=peer,
                        first=checkpoint.first,
                        last=checkpoint.last,
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
        if mine and message.last <= next(reversed(mine)):
            self._compare(message)  # finished here too (or too long ago to remember)
            return
        claims = self._claims.setdefault((message.group_id, message.src), OrderedDict())
        claims[message.last] = message
        while len(claims) > self.keep:
            claims.popitem(last=False)

    def _compare(self, theirs: ResultDigest) -> None:
        mine = self._mine.get(theirs.group_id, {}).get(theirs.last)
        if mine is None:
            return  # not finished here, or not reported
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
        if mine.first != theirs.first:
            return  # not the same window (the logs differ, which the core's checks catch)
        self.compared += 1
        verdicts = self._verdicts.setdefault((theirs.group_id, theirs.last), {})
        verdicts[theirs.src] = mine.digest == theirs.digest
        key = (theirs.group_id, theirs.src)
        if mine.digest == theirs.digest:
            found = self._found.get(key)
            if found is not None and mine.state_checked and mine.last > found.last:
                del self._found[key]  # the same state, after the difference: repaired
                logger.info(
                    "node %s: group %s: node %s's state and results agree with this node's "
                    "again (instances %s..%s, ending with a state check): alarm cleared",
                    self.node_id,
                    theirs.group_id,
                    theirs.src,
                    mine.first,
                    mine.last,
                )
            return
        if key in self._found:
            return
        found = Divergence(
            theirs.group_id,
            theirs.src,
            mine.first,
            mine.last,
            mine.digest,
            theirs.digest,
            time.time(),
            mine.state_checked,
        )
        self._found[key] = found
        logger.error("node %s: %s", self.node_id, found.describe())

    def divergences(self) -> list[Divergence]:
        """Every (group, peer) whose results differed from this node's, first difference each,
        by group and peer (not in the order found: the API, ``/readyz`` and ``paxos status``
        list them alike every time)."""
        return [self._found[key] for key in sorted(self._found)]

    def window(self, group_id: int, last: int) -> tuple[Checkpoint | None, dict[int, bool]]:
        """This node's window of the group that ended at ``last`` (None if it did not report
        one), and for each peer that reported it too whether their digests were the same."""
        checkpoint = self._mine.get(group_id, {}).get(last)
        return checkpoint, dict(self._verdicts.get((group_id, last), {}))

    def alarmed(self, group_id: int) -> bool:
        """Some peer's results for the group differed from this node's."""
        return any(group == group_id for group, _peer in self._found)

    def odd_one_out(self, group_id: int) -> bool:
        """This node disagrees with a majority of the other nodes in the group: it is likely
        the odd one (in a cluster of two, either may be)."""
        differing = sum(1 for group, _peer in self._found if group == group_id)
        return 2 * differing > len(self.peers)
