"""State checks: the leader puts a marker in a group's log, and at that place every node hashes
its state machine's state (``StateMachine.state_digest``) into its result digests.

Why through the log: the nodes must hash the same state, and only a place in the log is the
same moment on every node. The marker's result is this node's digest there
(``Applier._state``); the window of result digests ends at it, and ``DivergenceCheck`` compares
that window with the peers' (``divergence.py``). Results alone miss a row changed behind Paxos'
back, which a KV put answers the same either way: the state checks find it.

``StateChecks.run`` checks every ``interval`` seconds where there is something new to compare;
``StateChecks.check`` checks one group now and waits for the peers' verdicts (``POST
/api/groups/<g>/state-check/``, ``paxos check``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from consensus.request_ids import new_request_id
from consensus.statemachine import StateMachine

from .apply import STALL_SHARE, STATE_PREFIX, Outcome
from .errors import SubmitError

if TYPE_CHECKING:
    from .node import PaxosNode

logger = logging.getLogger("consensus.runtime")

STATE_CHECK_INTERVAL = 300.0
"""Seconds between a leader's state checks of a group (``StateChecks.run``); 0: none."""
STATE_CHECK_WAIT = 2.0
"""Seconds ``StateChecks.check`` waits for the peers' digests of its window."""


def _verdict(same: bool | None) -> str:
    return "not compared" if same is None else "same" if same else "differs"


class StateChecks:
    """A node's state checks (the module docstring says why they go through the log)."""

    def __init__(self, node: PaxosNode, interval: float = STATE_CHECK_INTERVAL) -> None:
        self.node = node
        self.interval = interval
        self._checked: dict[int, int] = {}  # group -> instance of its last state check
        self._due: dict[int, float] = {}  # group -> loop time before which it is not checked
        self._links_at_check: dict[int, int] = {}  # group -> ``_links_made()`` at that check

    async def run(self) -> None:
        """As leader, put a state check in the log of each group whose machine has a
        ``state_digest``. Only when there is something new to compare: the group applied
        something since the last check, a peer (re)connected (a node that restarted, whose
        own alarms went with its memory), or an alarm of the group waits to be cleared.

        A check scans the group's whole state on every node's writer thread at once, and the
        writes wait: a check that took ``s`` seconds here is followed by the next one no sooner
        than ``STALL_SHARE * s`` seconds later (a store whose scan takes 1 s is checked every
        17 minutes at most), so checks cost at most 0.1% of the time however big the state."""
        node = self.node
        if self.interval <= 0 or not node.applier.digests.window:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            links = self._links_made()
            for group_id, replica in node.replicas.items():
                machine = node.machines[group_id]
                if type(machine).state_digest is StateMachine.state_digest:
                    continue
                if loop.time() < self._due.get(group_id, 0.0):
                    continue
                new = (
                    node.applied.get(group_id, 0) > self._checked.get(group_id, 0)
                    or links != self._links_at_check.get(group_id)
                    or node.divergence.alarmed(group_id)
                )
                if not replica.is_leader() or not new:
                    continue
                self._links_at_check[group_id] = links
                try:
                    outcome = await self._submit(group_id)
                except SubmitError:
                    continue  # no quorum, or no longer the leader: the next round will do
                except Exception:  # noqa: BLE001 - the checks must go on
                    logger.exception(
                        "node %s group %s: a state check failed", node.node_id, group_id
                    )
                    continue
                else:
                    self._checked[group_id] = outcome.instance
                    took = node.applier.state_seconds.get(group_id, 0.0)
                    self._due[group_id] = loop.time() + STALL_SHARE * took
                    logger.debug(
                        "node %s group %s: state at instance %s: %s",
                        node.node_id,
                        group_id,
                        outcome.instance,
                        outcome.result,
                    )

    async def check(self, group_id: int, wait: float = STATE_CHECK_WAIT) -> dict[str, Any]:
        """Put a state check in the group's log now and say how this node's window that ends
        there compares with each peer's, waiting up to ``wait`` seconds for their digests."""
        node = self.node
        outcome = await self._submit(group_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        peers = node.divergence.peers
        while True:
            checkpoint, verdicts = node.divergence.window(group_id, outcome.instance)
            if len(verdicts) == len(peers) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        if checkpoint is None:
            note = (
                "this node did not digest the window (the check is off, it was catching up, or "
                "its state_digest failed: see its log)"
            )
        elif outcome.result is None:
            note = "the state machine has no state_digest: its results were compared, not its state"
        else:
            note = None
        return {
            "group_id": group_id,
            "node_id": node.node_id,
            "instance": outcome.instance,
            "first": None if checkpoint is None else checkpoint.first,
            "state": outcome.result,
            "peers": {str(peer): _verdict(verdicts.get(peer)) for peer in peers},
            "note": note,
        }

    async def _submit(self, group_id: int) -> Outcome:
        """A state check through the group's log; its outcome's result is this node's
        ``state_digest`` there (``Applier._state``)."""
        return await self.node.submit(group_id, "", f"{STATE_PREFIX}{new_request_id()}")

    def _links_made(self) -> int:
        """Peer links established so far (each restart of a peer makes new ones)."""
        transport = self.node.transport
        if transport is None:
            return 0
        return sum(transport.peer_stats(peer).connects for peer in self.node.divergence.peers)
