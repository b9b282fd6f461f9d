"""Readiness of a node: may a load balancer send it client traffic?

A node is *ready* when a command sent to it would be served promptly:

1. it reaches a majority of the cluster (itself plus peers with a live link in both directions),
   since without a majority nothing can be chosen;
2. it knows a leader for every group (a candidate or a node that lost the leader would make
   clients wait for an election), except a group some peer does not list yet (peers'
   handshakes say which groups they list): one being added node by node, which serves once
   every node lists it (its rows rebuild on each node, as a new cluster's do), is a note, or a
   rolling restart gated on readiness would never get past its first node;
3. every group's state machine is caught up: applied within ``PAXOS_READY_MAX_LAG`` instances of
   the highest chosen index this node knows of (its own or a peer's), so local reads are not
   stale by much and linearizable reads do not wait for a long catch-up.

Liveness (``/healthz``) is only "the process serves HTTP"; restarting a node that is merely
unready (e.g. its peers are down) would not help.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings

from consensus.runtime import PaxosNode
from consensus.runtime.reach import no_majority, reachable_peers

DEFAULT_MAX_LAG = 100
LOOP_READ_TIMEOUT = 2.0
"""Seconds a thread waits for the node's event loop to take a snapshot (``read_on_loop``)."""

T = TypeVar("T")


def _peers_without(group_id: int, peers: dict[str, Any]) -> list[int]:
    """The peers whose last handshake said they do not list ``group_id`` (a peer that told no
    list, not heard from or of an earlier release, is not counted: it may list it)."""
    return [
        peer["node_id"]
        for peer in peers.get("peers", ())
        if peer.get("groups") is not None and group_id not in peer["groups"]
    ]


class NodeUnavailableError(Exception):
    """The node's event loop did not take the snapshot (it is stopping, stopped or stuck)."""


def read_on_loop(
    node: PaxosNode, read: Callable[[PaxosNode], T], timeout: float | None = None
) -> T:
    """``read(node)``, run on the node's event loop, from any thread.

    The runtime mutates its in-memory state (replicas, their dicts, transport stats) on its event
    loop, so sync views and collectors on worker threads must not read it directly ("dictionary
    changed size during iteration", torn reads). ``read`` runs right here on the loop's thread,
    and when no running loop is known: before ``start()`` began (the state only
    grows by whole replicas then), after the loop stopped, or for a stand-in node without
    ``event_loop``. Otherwise the calling thread waits up to ``timeout`` seconds (default
    ``LOOP_READ_TIMEOUT``) and gets ``NodeUnavailableError`` if the loop did not run ``read`` by
    then. ``read`` must be quick, must not block, and must return copies the caller may use on its
    own thread, not live structures.
    """
    event_loop = getattr(node, "event_loop", None)
    loop = event_loop() if event_loop is not None else None
    if loop is None or not loop.is_running() or _running_loop() is loop:
        return read(node)
    if timeout is None:
        timeout = LOOP_READ_TIMEOUT
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return  # the caller gave up waiting
        try:
            future.set_result(read(node))
        except BaseException as error:
            future.set_exception(error)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError as error:  # the loop was closed in the meantime
        raise NodeUnavailableError("the node's event loop is closed") from error
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise NodeUnavailableError(
            f"the node's event loop did not answer within {timeout:g}s"
        ) from None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass
class GroupReadiness:
    group_id: int
    leader: int | None
    applied: int
    known_chosen: int
    """The highest chosen index this node knows of: its own, or one a peer reported."""

    @property
    def behind(self) -> int:
        return max(0, self.known_chosen - self.applied)


@dataclass
class Readiness:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What is worth knowing but does not make the node unready."""
    reachable: int = 0
    """Nodes this node can talk to, itself included."""
    cluster_size: int = 0
    groups: list[GroupReadiness] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unready",
            "reasons": self.reasons,
            "notes": self.notes,
            "reachable": self.reachable,
            "cluster_size": self.cluster_size,
            "groups": [
                {
                    "group_id": g.group_id,
                    "leader": g.leader,
                    "applied": g.applied,
                    "known_chosen": g.known_chosen,
                    "behind": g.behind,
                }
                for g in self.groups
            ],
        }


def node_started(node: PaxosNode | None) -> bool:
    """The node's replicas all exist, so ``status()`` works (they are created one by one, with
    database reads in between, while the node starts)."""
    return node is not None and len(node.replicas) >= len(node.config.group_ids)


def max_lag() -> int:
    return int(getattr(settings, "PAXOS_READY_MAX_LAG", DEFAULT_MAX_LAG))


def readiness(node: PaxosNode | None) -> Readiness:
    """Compute readiness from the node's in-memory state (call it on the node's event loop)."""
    if node is None:
        return Readiness(False, ["this process runs no Paxos node"])
    if not node_started(node):
        return Readiness(False, ["the node is starting"])
    failure = getattr(node, "failure", None)
    if failure is not None:
        return Readiness(False, [f"the node stopped after a storage failure ({failure})"])
    if getattr(node, "stopping", False):  # handing its groups over: it refuses requests
        return Readiness(False, ["the node is stopping"])
    status = node.status()
    cluster_size = len(node.config.node_ids)
    reachable = 1 + len(reachable_peers(status.get("peers") or {}))
    result = Readiness(True, reachable=reachable, cluster_size=cluster_size)
    problem = no_majority(reachable, cluster_size)
    if problem is not None:
        result.reasons.append(problem)
    bound = max_lag()
    for group in status["groups"]:
        replica = node.replicas.get(group["group_id"])
        known = replica.known_chosen_upto if replica is not None else group["chosen_upto"]
        state = GroupReadiness(group["group_id"], group["leader"], group["applied"], known)
        result.groups.append(state)
        waiting = state.leader is None or group.get("rebuilding")
        without = _peers_without(state.group_id, status.get("peers") or {}) if waiting else []
        if without:  # being added node by node: not this node's to fix, and it serves the rest
            result.notes.append(
                f"group {state.group_id}: node(s) {', '.join(map(str, without))} do not list it "
                "yet; it serves once every node does"
            )
        elif state.leader is None:
            result.reasons.append(f"group {state.group_id}: no leader known")
        if group.get("rebuilding") and not without:
            result.reasons.append(
                f"group {state.group_id}: rebuilding (a new database, a group new to this "
                "node, or a database older than votes it sent): it does not vote until the "
                "others have told it what the group has seen (README 'A node that lost its "
                "database')"
            )
        if state.behind > bound:
            result.reasons.append(
                f"group {state.group_id}: applied {state.applied}, {state.behind} instances "
                f"behind {state.known_chosen} (bound {bound})"
            )
    divergence = getattr(node, "divergence", None)
    for found in divergence.divergences() if divergence is not None else ():
        if divergence.odd_one_out(found.group_id):
            result.reasons.append(found.describe())
        else:  # most of its peers agree with this node: it serves on
            result.notes.append(f"{found.describe()} (most other nodes agree with this one)")
    result.ready = not result.reasons
    return result
