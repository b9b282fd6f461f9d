"""``DashboardConsumer``: one browser's live view. Staff only; receives the snapshots the feed
broadcasts to the ``paxos-dashboard`` channel-layer group, and one right away on connect."""

from __future__ import annotations

import json
import logging
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib import auth

from consensus.health import node_started
from consensus.runtime import get_node
from consensus.transport import ws_limits

from .feed import GROUP_NAME, MIN_INTERVAL, get_feed
from .snapshot import build_snapshot, snapshot_frame

logger = logging.getLogger("consensus.dashboard")

CLOSE_FORBIDDEN = 4403
DASHBOARD_PATH = "ws/dashboard/"
"""Route of the consumer (``consensus.routing``); the page connects to ``/`` + it."""
RECHECK_SECONDS = 5.0
"""How often an open dashboard reads its session and user again: a logout, an account made
inactive or not staff, or a changed password ends the live view within this long. (Checked at
connect only, the view went on for good: a dashboard websocket never times out.)"""
MAX_UNSENT_BYTES = 512 * 1024
"""A browser with this much of the earlier snapshots still unsent (a stalled tab) skips the
broadcasts until it has taken them: a snapshot is 30-200 KB, four a second, and daphne's send
does not wait; about 45 MB queued per stalled tab before its ping timeout ended it."""


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    joined = False
    checked_at = 0.0
    refreshed_at = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Leave the feed however the consumer ends: one that raised (a snapshot that could not
        be built) never ran ``disconnect``, and the feed went on building snapshots for it, four
        a second, for good."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._leave()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_active or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)  # before accept(): the handshake gets a 403
            return
        await self.channel_layer.group_add(GROUP_NAME, self.channel_name)
        await self.accept()
        self.checked_at = time.monotonic()
        feed = get_feed()
        if feed is not None:
            feed.subscribers += 1
        self.joined = True
        logger.debug("dashboard websocket opened by %s", user.get_username())
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        if not self.joined:
            return
        self.joined = False
        feed = get_feed()
        if feed is not None:
            feed.subscribers = max(0, feed.subscribers - 1)
        await self.channel_layer.group_discard(GROUP_NAME, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """``{"type": "refresh"}`` asks for a snapshot now (at most one per ``MIN_INTERVAL``:
        each is built on the node's event loop); anything else is ignored, garbage and binary
        frames included (channels' JSON consumer raised on them, which ended the consumer)."""
        try:
            content = json.loads(text_data) if text_data else None
        except ValueError:
            return
        if not (isinstance(content, dict) and content.get("type") == "refresh"):
            return
        if time.monotonic() - self.refreshed_at < MIN_INTERVAL:
            return  # the next broadcast is at most a second away
        if await self._still_allowed():
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        self.refreshed_at = time.monotonic()
        node = get_node()
        if not node_started(node):
            await self.send_json({"type": "unavailable", "error": "the node is not running"})
            return
        try:
            snapshot = await build_snapshot(node, get_feed())
        except Exception as error:  # noqa: BLE001 - a database busy under load, say: try later
            logger.warning("could not build a dashboard snapshot: %r", error)
            await self.send_json({"type": "unavailable", "error": "no snapshot now; retrying"})
            return
        await self.send(text_data=snapshot_frame(snapshot))

    async def dashboard_snapshot(self, event: dict[str, Any]) -> None:
        """A broadcast from the feed (channel-layer type ``dashboard.snapshot``): the snapshot's
        frame, encoded once for every browser."""
        if ws_limits.unsent_bytes(self.scope) > MAX_UNSENT_BYTES:
            return  # not reading: the next broadcast it can take is as good
        if await self._still_allowed():
            await self.send(text_data=event["frame"])

    async def _still_allowed(self) -> bool:
        """True while the session still belongs to an active staff user (read again every
        ``RECHECK_SECONDS``); else the socket is closed with ``CLOSE_FORBIDDEN``."""
        if time.monotonic() - self.checked_at < RECHECK_SECONDS:
            return True
        self.checked_at = time.monotonic()
        if await _session_is_staff(self.scope):
            return True
        logger.info("dashboard websocket closed: its session no longer belongs to staff")
        await self._leave()
        await self.close(code=CLOSE_FORBIDDEN)
        return False


@database_sync_to_async
def _session_is_staff(scope: dict[str, Any]) -> bool:
    """Whether the socket's session, read again from the session store, still logs in an
    active staff user: ``auth.get_user`` also checks the session's password hash, so a changed
    password ends it, as it ends the admin's sessions."""
    key = getattr(scope.get("session"), "session_key", None)
    if not key:
        return False
    session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return bool(user.is_active and user.is_staff)
