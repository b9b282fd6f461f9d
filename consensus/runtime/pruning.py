"""Pruning the exactly-once results through the log (``consensus/storage/pruning.py`` says why
through the log): the leader of a group computes a cutoff on its own clock and proposes it as a
marker, and every node deletes the results below it when it applies the marker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from consensus.request_ids import new_request_id
from consensus.storage.pruning import prune_cutoff
from consensus.storage.reconnect import reconnecting

from .apply import PRUNE_PREFIX
from .errors import SubmitError

if TYPE_CHECKING:
    from .node import PaxosNode

logger = logging.getLogger("consensus.runtime")

PRUNE_MAX_ROWS = 20_000
"""Results one pruning marker deletes at most (every node deletes them in an apply transaction)."""
PRUNE_CATCH_UP_DELAY = 1.0
"""Seconds to the next pruning round after one that pruned (instead of ``interval``)."""


class ResultPruning:
    """A node's pruning rounds: results older than ``ttl`` seconds or beyond the newest ``most``
    of a group go, checked every ``interval`` seconds (neither bound: nothing is pruned)."""

    def __init__(
        self, node: PaxosNode, ttl: float | None, most: float | None, interval: float
    ) -> None:
        self.node = node
        self.ttl = ttl
        self.most = most
        self.interval = interval
        self._proposed: dict[int, int] = {}  # group -> the last cutoff this node proposed

    async def run(self) -> None:
        """As leader, propose dropping old results, group by group, round after round."""
        if self.ttl is None and self.most is None:
            return
        node = self.node
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            for group_id, replica in node.replicas.items():
                if not replica.is_leader():
                    continue
                # A read on a thread of its own, not the writer's: on a big table it takes a
                # while, and commits must not wait for it. A failed read (the database went
                # away) waits for the next round; it used to end this task for good.
                try:
                    cutoff = await asyncio.to_thread(
                        reconnecting(prune_cutoff),
                        group_id,
                        ttl_seconds=self.ttl,
                        max_results=None if self.most is None else int(self.most),
                        using=node.storage.using,
                        max_rows=PRUNE_MAX_ROWS,
                    )
                except Exception as error:  # noqa: BLE001 - try again next round
                    logger.warning(
                        "node %s group %s: could not look for results to prune: %s",
                        node.node_id,
                        group_id,
                        error,
                    )
                    continue
                if cutoff is None or cutoff <= self._proposed.get(group_id, 0):
                    continue
                self._proposed[group_id] = cutoff
                delay = min(delay, PRUNE_CATCH_UP_DELAY)  # a bounded step: there may be more
                with contextlib.suppress(SubmitError):
                    await node.submit(group_id, str(cutoff), f"{PRUNE_PREFIX}{new_request_id()}")
                    logger.info(
                        "node %s group %s: results below instance %s pruned",
                        node.node_id,
                        group_id,
                        cutoff,
                    )
