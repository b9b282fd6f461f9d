"""The dashboard feed: a runtime observer that remembers what a snapshot cannot show (commits per
second, recent events), and the broadcaster task that pushes snapshots to every open dashboard.

Theory of operation. The runtime calls the observer hooks on its event loop, inside the Ready
loop, so they only count and set a flag. ``DashboardFeed.run`` is a separate task on the same
loop: it wakes when something changed (or once a second for uptime and peer links), at most every
``MIN_INTERVAL`` seconds, and then

1. watches for transitions worth a log line that no other layer logs: a group's state machine
   falling behind and catching up again, and the node turning ready or unready;
2. if any browser is subscribed, builds one snapshot, encodes it once as a websocket frame and
   ``group_send``s the frame through the channel layer to the ``paxos-dashboard`` group, where
   every ``DashboardConsumer`` sends it as it is to its websocket.

The channel layer is the in-memory one (one process per node): the consumers and the runtime live
in the same process, so nothing crosses the network except the websocket to the browser. A slow
browser can only fill its own channel's queue; the layer then drops messages for it, never blocks
the broadcaster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from consensus.health import node_started, readiness
from consensus.runtime import PaxosNode
from consensus.runtime.observer import NodeObserver
from consensus.storage.reconnect import reconnecting

logger = logging.getLogger("consensus.dashboard")

GROUP_NAME = "paxos-dashboard"
"""Channel-layer group every dashboard websocket joins."""
WINDOW_SECONDS = 60
MIN_INTERVAL = 0.25
"""Seconds between two broadcasts at most (under load, a browser gets ~4 updates a second)."""
IDLE_INTERVAL = 1.0
"""Seconds between broadcasts when nothing changed (uptime, peer links, commit rate decay)."""
CATCH_UP_WINDOWS = 2
"""A group more than this many pipeline windows (``ReplicaConfig.window`` instances) behind the
highest chosen index it knows of is catching up; it has caught up when it is within one window
again. In normal operation applied trails chosen by at most the instances in flight."""
STARTUP_POLLS = 6000
"""Polls, 10 ms apart, for the node's replicas to exist after start (then the feed goes on)."""
EVENTS_KEPT = 30
LATEST_PER_GROUP = 8


class CommitWindow:
    """Commands applied per group, in one-second buckets over the last ``seconds`` seconds."""

    def __init__(
        self, seconds: int = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._started = clock()
        self._buckets: dict[int, dict[int, int]] = {}

    def add(self, group_id: int, commands: int) -> None:
        now = int(self._clock())
        buckets = self._buckets.setdefault(group_id, {})
        buckets[now] = buckets.get(now, 0) + commands
        if len(buckets) > 2 * self.seconds:
            for second in [s for s in buckets if s < now - self.seconds]:
                del buckets[second]

    def series(self, group_id: int) -> list[int]:
        """Commands per second over the last complete seconds, oldest first."""
        now = int(self._clock())
        buckets = self._buckets.get(group_id, {})
        return [buckets.get(second, 0) for second in range(now - self.seconds, now)]

    def rate(self, group_id: int) -> float:
        """Mean commands per second over the last minute (or since start, if shorter)."""
        span = max(1, min(self.seconds, int(self._clock()) - int(self._started)))
        return sum(self.series(group_id)[-span:]) / span


class DashboardFeed(NodeObserver):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = CommitWindow(clock=clock)
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.subscribers = 0
        """Open dashboard websockets (the consumers count themselves in and out)."""
        self._changed = asyncio.Event()
        self._latest: dict[int, tuple[int, list[dict[str, Any]]]] = {}
        self._catching_up: dict[int, tuple[float, int]] = {}
        self._peer_up: dict[int, bool] = {}
        self._ready: bool | None = None
        self._node: PaxosNode | None = None
        self._last_applied: dict[int, int] = {}

    # -- observer hooks (on the runtime's loop: count, remember, flag; nothing else) ------------

    def role_changed(self, group_id: int, old: str, new: str, ballot: str) -> None:
        self.event(f"{old} -> {new} (ballot {ballot})", group_id)

    def leader_changed(self, group_id: int, leader: int | None) -> None:
        self.event(f"leader is node {leader}" if leader else "leader unknown", group_id)

    def loop_stalled(self, seconds: float) -> None:
        self.event(f"event loop stalled for {seconds * 1000:.0f} ms (process paused or starved)")

    def commands_applied(self, group_id: int, commands: int, applied: int) -> None:
        self.window.add(group_id, commands)
        self._changed.set()
        previous = self._last_applied.get(group_id, applied)
        self._last_applied[group_id] = applied
        if self._node is not None:
            # Here and not only in watch(): a catch-up of thousands of instances can take less
            # than one broadcast interval, and it is always made of applies.
            self._check_catch_up(self._node, group_id, applied, previous)

    # -- what the dashboard shows besides the node's status ------------------------------------

    def event(self, text: str, group_id: int | None = None) -> None:
        self.events.appendleft({"at": time.time(), "group_id": group_id, "text": text})
        self._changed.set()

    async def latest_commits(self, node: PaxosNode, group_id: int, applied: int) -> list[Any]:
        """The last applied instances of a group (read from the database when ``applied`` moved;
        the rows of chosen instances never change, so the cache is exact)."""
        cached = self._latest.get(group_id)
        if cached is not None and cached[0] == applied:
            return cached[1]
        from .snapshot import load_latest_commits

        rows = await sync_to_async(reconnecting(load_latest_commits))(
            node.storage.using, group_id, applied, LATEST_PER_GROUP
        )
        self._latest[group_id] = (applied, rows)
        return rows

    # -- the broadcaster -------------------------------------------------------------------------

    async def run(self, node: PaxosNode) -> None:
        """Until cancelled: watch for transitions and push snapshots to subscribed browsers."""
        from .snapshot import build_snapshot, snapshot_frame

        layer = get_channel_layer()
        self._node = node
        # Note where each group's state machine starts (its recovered applied index) before any
        # peer can send us anything, so a catch-up right after a restart is seen as one.
        for _ in range(STARTUP_POLLS):
            if node_started(node):
                break
            await asyncio.sleep(0.01)
        for group_id, applied in node.applied.items():
            self._last_applied.setdefault(group_id, applied)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), IDLE_INTERVAL)
            self._changed.clear()
            if node_started(node):
                try:
                    self.watch(node)
                    if self.subscribers and layer is not None:
                        frame = snapshot_frame(await build_snapshot(node, self))
                        await layer.group_send(
                            GROUP_NAME, {"type": "dashboard.snapshot", "frame": frame}
                        )
                except asyncio.CancelledError:
                    raise
                except Exception:  # the dashboard must never take the node down
                    logger.exception("node %s: dashboard broadcast failed", node.node_id)
            await asyncio.sleep(MIN_INTERVAL)

    def watch(self, node: PaxosNode) -> None:
        """Log (and show) transitions of catch-up, readiness and peer links."""
        state = readiness(node)
        for group in state.groups:
            self._check_catch_up(node, group.group_id, group.applied)
        if state.ready != self._ready:
            if state.ready:
                logger.info("node %s: ready", node.node_id)
                self.event("ready")
            elif self._ready is not None:  # starting up unready is expected, not news
                reasons = "; ".join(state.reasons)
                logger.warning("node %s: not ready: %s", node.node_id, reasons)
                self.event(f"not ready: {reasons}")
            self._ready = state.ready
        # The transport's status alone: the node's whole status (every group's, the digests')
        # cost 0.5-2 ms on the loop, at every wake-up, browsers or not.
        transport = node.transport.status() if node.transport is not None else {}
        for peer in transport.get("peers", []):
            up = bool(peer.get("connected_out") and peer.get("connected_in"))
            before = self._peer_up.get(peer["node_id"])
            self._peer_up[peer["node_id"]] = up
            if before is not None and up != before:  # the transport logs these itself
                self.event(f"link to node {peer['node_id']} {'up' if up else 'down'}")

    def _check_catch_up(
        self, node: PaxosNode, group_id: int, applied: int, previous: int | None = None
    ) -> None:
        """``previous``: the applied index before the apply being reported, where the catch-up
        began if this apply is the first one that reveals it."""
        replica = node.replicas.get(group_id)
        if replica is None:
            return
        known = replica.known_chosen_upto
        behind = max(0, known - applied)
        window = replica.config.window
        threshold = CATCH_UP_WINDOWS * window
        begin = applied if previous is None else previous
        started = self._catching_up.get(group_id)
        # Behind now, or just jumped forward by a lot (a catch-up that fit in one transaction).
        if started is None and (behind > threshold or applied - begin > threshold):
            self._catching_up[group_id] = (time.monotonic(), begin)
            logger.info(
                "node %s group %s: catch-up started applied=%s target=%s behind=%s",
                node.node_id,
                group_id,
                begin,
                known,
                known - begin,
            )
            self.event(f"catch-up started: {known - begin} instances behind", group_id)
            started = self._catching_up[group_id]
        if started is not None and behind <= window:
            del self._catching_up[group_id]
            seconds = time.monotonic() - started[0]
            logger.info(
                "node %s group %s: catch-up finished applied=%s instances=%s seconds=%.2f",
                node.node_id,
                group_id,
                applied,
                applied - started[1],
                seconds,
            )
            self.event(
                f"catch-up finished: {applied - started[1]} instances in {seconds:.2f}s", group_id
            )


_feed: DashboardFeed | None = None


def install_feed(feed: DashboardFeed | None) -> None:
    global _feed
    _feed = feed


def get_feed() -> DashboardFeed | None:
    return _feed
