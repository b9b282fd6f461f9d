"""``NodeNotices``: what a node tells its log and its observer about its replicas.

Why a class of its own: these lines are what an operator reads when something is off (a leader
change, a step-down and why, a rebuilding database and whom it waits for, a peer whose config
lists another group), and each must be said once, not on every turn or heartbeat. That takes a
little memory of what was said, which has nothing to do with running the replicas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from consensus.core import Replica, Role
from consensus.core.ballot import Ballot
from consensus.core.messages import Message
from consensus.throttle import LogThrottle

from .observer import NodeObserver

logger = logging.getLogger("consensus.runtime")

UNKNOWN_GROUP_REPEAT = 60.0
"""Seconds between two log lines about a peer's messages for a group this node does not have
(or of one kind that the node drops as implausible)."""
REBUILD_PATIENCE = 5.0
"""Seconds a group may rebuild before the node says what it waits for (core/rebuild.py)."""


class NodeNotices:
    def __init__(self, node_id: int, observer: NodeObserver) -> None:
        self.node_id = node_id
        self.observer = observer
        self._roles: dict[int, tuple[str, int | None]] = {}
        self._ballots: dict[int, Ballot] = {}
        """Each group's ballot when its role last changed: a step-down names the ballot the
        node led (or campaigned) with, not the higher one it stepped down for."""
        self._rebuild_started: dict[int, float] = {}  # rebuilding groups -> when first seen
        self._rebuild_said: set[tuple[int, str]] = set()  # (group, step) already logged
        self._unknown_groups = LogThrottle(UNKNOWN_GROUP_REPEAT)  # (peer, group) keys
        self._implausible = LogThrottle(UNKNOWN_GROUP_REPEAT)  # (peer, group, type) keys

    def rebuilds(self, replicas: Mapping[int, Replica]) -> None:
        """Log a rebuilding group's story (core/rebuild.py): what it waits for once it has
        waited ``REBUILD_PATIENCE`` seconds, and what it learned when it votes again. A new
        cluster's groups rebuild to instance 0 at once (every peer has seen nothing): no line."""
        now = time.monotonic()
        for group_id, replica in replicas.items():
            if replica.stale_storage_reason and (group_id, "stale") not in self._rebuild_said:
                self._rebuild_said.add((group_id, "stale"))
                logger.error(
                    "node %s group %s: this node's database is older than votes it sent (%s): "
                    "restored from a backup, or a copy of an older one? It rebuilds: it does not "
                    "vote until it has learned what the group chose since (README 'A node that "
                    "lost its database')",
                    self.node_id,
                    group_id,
                    replica.stale_storage_reason,
                )
            if replica.audit_unanswered and (group_id, "audit") not in self._rebuild_said:
                self._rebuild_said.add((group_id, "audit"))
                logger.info(
                    "node %s group %s: votes again without hearing from node(s) %s whether they "
                    "saw it vote beyond its database before it restarted (no answer within half "
                    "an election timeout; a node that is down has forgotten that anyway)",
                    self.node_id,
                    group_id,
                    ", ".join(map(str, replica.audit_unanswered)),
                )
            if replica.rebuilding:
                started = self._rebuild_started.setdefault(group_id, now)
                waiting = replica.rebuild_waiting_for
                step = f"asking {waiting}" if waiting else "learning"
                if now - started < REBUILD_PATIENCE or (group_id, step) in self._rebuild_said:
                    continue
                self._rebuild_said.add((group_id, step))
                why = _rebuild_cause(replica)
                if waiting:
                    logger.warning(
                        "node %s group %s: %s: it does not vote until every other node has told "
                        "it what the group has seen; waiting for node(s) %s (down, unreachable, "
                        "or not listing the group yet)",
                        self.node_id,
                        group_id,
                        why,
                        ", ".join(map(str, waiting)),
                    )
                else:
                    logger.warning(
                        "node %s group %s: %s, and the group has a history: it does not vote "
                        "until it has learned the log up to instance %s (chosen up to %s so far; "
                        "that needs a majority of the other nodes)",
                        self.node_id,
                        group_id,
                        why,
                        replica.rebuild_target,
                        replica.chosen_upto,
                    )
            elif replica.rebuilt_upto and (group_id, "done") not in self._rebuild_said:
                self._rebuild_said.add((group_id, "done"))
                logger.warning(
                    "node %s group %s: this node's database %s: it learned the log up to "
                    "instance %s before voting again",
                    self.node_id,
                    group_id,
                    "was older than votes it had sent"
                    if replica.stale_storage_reason
                    else "was new but the group has a history (a replaced disk or a deleted "
                    "database file?)",
                    replica.rebuilt_upto,
                )

    def role_changes(self, replicas: Mapping[int, Replica]) -> None:
        for group_id, replica in replicas.items():
            now = (replica.role.value, replica.leader_id)
            before = self._roles.get(group_id, (Role.FOLLOWER.value, None))
            if now == before:
                continue
            self._roles[group_id] = now
            if now[0] != before[0]:
                stepped_down = now[0] == Role.FOLLOWER.value and replica.step_down_reason
                ballot = self._ballots.get(group_id, replica.ballot)
                logger.info(
                    "node %s group %s: %s -> %s (ballot %s)%s",
                    self.node_id,
                    group_id,
                    before[0],
                    now[0],
                    ballot if stepped_down else replica.ballot,
                    f": {replica.step_down_reason}" if stepped_down else "",
                )
                self._ballots[group_id] = replica.ballot
                self.observer.role_changed(group_id, before[0], now[0], str(replica.ballot))
            if now[1] != before[1]:
                if now[1] is not None:
                    logger.info("node %s group %s: leader is %s", self.node_id, group_id, now[1])
                self.observer.leader_changed(group_id, now[1])

    def unknown_group(self, msg: Message) -> None:
        """A peer's message for a group this node does not have (its config lists the group,
        ours does not, e.g. halfway through adding a group): dropped, and said once a minute per
        peer and group, not once per heartbeat."""
        if not self._unknown_groups.first((msg.src, msg.group_id)):
            return
        logger.warning(
            "node %s: dropping messages from node %s for group %s, which this node's config "
            "does not list (first: %s); every node must list the same groups",
            self.node_id,
            msg.src,
            msg.group_id,
            type(msg).__name__,
        )

    def implausible(self, msg: Message, problem: str) -> None:
        """A peer's message too far from what this node knows (``plausible.py``): dropped, and
        said once a minute per peer, group and kind of message."""
        if not self._implausible.first((msg.src, msg.group_id, type(msg))):
            return
        logger.warning(
            "node %s: dropped %s from node %s for group %s: %s (a peer far behind, which "
            "catches up, or a bug, corrupted memory, another cluster's node; such messages "
            "are ignored as lost; said once a minute)",
            self.node_id,
            type(msg).__name__,
            msg.src,
            msg.group_id,
            problem,
        )


def _rebuild_cause(replica: Replica) -> str:
    if replica.stale_storage_reason:
        return "this node's database is older than votes it sent"
    return "this node's database is new, or the group is new to it"
