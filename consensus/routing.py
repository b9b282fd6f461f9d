"""Websocket routes of the consensus app (peer links, live dashboard); the transport fills them."""

import logging
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import URLPattern, URLResolver, path, re_path

from consensus.api.stream import CLIENT_STREAM_PATH, client_stream
from consensus.dashboard.consumers import DASHBOARD_PATH, DashboardConsumer
from consensus.transport.consumers import PeerConsumer
from consensus.transport.peers import PEER_PATH

logger = logging.getLogger("consensus.routing")

UNKNOWN_PATH_CLOSE_CODE = 4404
"""The close code for a websocket path no route takes: "not found" in the private range, the only
codes besides 1000 that daphne (autobahn) lets an application close with."""


async def unknown_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A websocket no route takes: accepted, then closed with ``UNKNOWN_PATH_CLOSE_CODE``.
    Channels' router raises for an unmatched path, which daphne answers with HTTP 500 and a
    traceback in the log per attempt; closing before the accept would say 403 (daphne's only
    refusal), which reads as "not allowed" rather than "not here"."""
    if (await receive())["type"] != "websocket.connect":
        return
    logger.info("websocket to unknown path %.100r from %s", scope["path"], scope.get("client"))
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": UNKNOWN_PATH_CLOSE_CODE})
    while (await receive())["type"] != "websocket.disconnect":
        pass


websocket_urlpatterns: list[URLPattern | URLResolver] = [
    # Peer links (consensus.transport): HMAC-authenticated, binary msgpack frames.
    path(PEER_PATH, PeerConsumer.as_asgi(), name="paxos-peer"),
    # Pipelined clients (consensus.api.stream): bearer token, JSON frames of many requests.
    path(CLIENT_STREAM_PATH, client_stream, name="paxos-client-stream"),
    # Live dashboard (consensus.dashboard): browsers with a staff session. Unlike peers, browsers
    # send an Origin, so a page on another site cannot ride the session cookie (CSWSH).
    path(
        DASHBOARD_PATH,
        AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi())),
        name="paxos-dashboard",
    ),
    # Last: any other path (otherwise channels' router raises, and daphne answers HTTP 500).
    re_path(r"", unknown_path, name="paxos-unknown-websocket"),
]
