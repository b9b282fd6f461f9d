"""``DashboardConsumer``: one browser's live view. Staff only; receives the snapshots the feed
broadcasts to the ``paxos-dashboard`` channel-layer group, and one right away on connect."""

from __future__ import annotations

import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from consensus.health import node_started
from consensus.runtime import get_node

from .feed import GROUP_NAME, get_feed
from .snapshot import build_snapshot

logger = logging.getLogger("consensus.dashboard")

CLOSE_FORBIDDEN = 4403
DASHBOARD_PATH = "ws/dashboard/"
"""Route of the consumer (``consensus.routing``); the page connects to ``/`` + it."""


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    subscribed = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_active or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)  # before accept(): the handshake gets a 403
            return
        await self.channel_layer.group_add(GROUP_NAME, self.channel_name)
        await self.accept()
        feed = get_feed()
        if feed is not None:
            feed.subscribers += 1
            self.subscribed = True
        logger.debug("dashboard websocket opened by %s", user.get_username())
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP_NAME, self.channel_name)
        feed = get_feed()
        if self.subscribed and feed is not None:
            feed.subscribers = max(0, feed.subscribers - 1)
        self.subscribed = False

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """``{"type": "refresh"}`` asks for a snapshot now; anything else is ignored."""
        if isinstance(content, dict) and content.get("type") == "refresh":
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        node = get_node()
        if not node_started(node):
            await self.send_json({"type": "unavailable", "error": "the node is not running"})
            return
        await self.send_json(
            {"type": "snapshot", "snapshot": await build_snapshot(node, get_feed())}
        )

    async def dashboard_snapshot(self, event: dict[str, Any]) -> None:
        """A broadcast from the feed (channel-layer type ``dashboard.snapshot``)."""
        await self.send_json({"type": "snapshot", "snapshot": event["snapshot"]})
