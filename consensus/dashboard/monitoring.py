"""``Monitoring``: everything that watches a node, attached in one place by ``runpaxos``.

monitoring = Monitoring()
node = PaxosNode(config, machines, observer=monitoring.observer)
monitoring.start(node)   # on the event loop; the broadcaster waits for the node to start
...
monitoring.stop()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from consensus.metrics import PrometheusObserver
from consensus.runtime import PaxosNode
from consensus.runtime.observer import NodeObserver

from .feed import DashboardFeed, install_feed

logger = logging.getLogger("consensus.dashboard")


class ObserverChain(NodeObserver):
    """Calls every observer in turn. A failing observer is logged and skipped: the hooks run in
    the Ready loop, and a metrics bug must not stop the node."""

    def __init__(self, observers: Sequence[NodeObserver]) -> None:
        self.observers = list(observers)

    def _each(self, hook: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                logger.exception("observer %s.%s failed", type(observer).__name__, hook)

    def role_changed(self, group_id: int, old: str, new: str, ballot: str) -> None:
        self._each("role_changed", group_id, old, new, ballot)

    def leader_changed(self, group_id: int, leader: int | None) -> None:
        self._each("leader_changed", group_id, leader)

    def storage_committed(self, seconds: float, readies: int, instances_applied: int) -> None:
        self._each("storage_committed", seconds, readies, instances_applied)

    def commands_applied(self, group_id: int, commands: int, applied: int) -> None:
        self._each("commands_applied", group_id, commands, applied)

    def request_finished(self, group_id: int, seconds: float, outcome: str) -> None:
        self._each("request_finished", group_id, seconds, outcome)

    def forwarded(self, group_id: int, commands: int) -> None:
        self._each("forwarded", group_id, commands)

    def loop_stalled(self, seconds: float) -> None:
        self._each("loop_stalled", seconds)


class Monitoring:
    """Prometheus counters plus the live dashboard feed, behind one observer."""

    def __init__(self) -> None:
        self.feed = DashboardFeed()
        self.observer = ObserverChain([PrometheusObserver(), self.feed])
        self._task: asyncio.Future[None] | None = None

    def start(self, node: PaxosNode) -> None:
        """Start the broadcaster (call on the running event loop)."""
        install_feed(self.feed)
        self._task = asyncio.ensure_future(self.feed.run(node))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        install_feed(None)
