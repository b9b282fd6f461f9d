"""Websocket frame limits: small until the other side has proved who it is.

A node takes frames of up to ``max_frame_size`` (16 MiB) from its peers and clients. Offered to
anyone, that let a client with no secret and no token announce a 16 MiB frame on
``/ws/peer/``, send all but its last byte and hang up: the server buffers every byte of it,
and dropped connections' buffers were not freed soon (a review measured about 480 MB more
per 30 such connections, 4.5 GB after 210). So every websocket starts with
``UNPROVEN_FRAME_LIMIT``, enough for a peer's handshake (``auth.MAX_HANDSHAKE_FRAME``), and its
consumer lifts that to the server's configured limit once the peer passed the handshake or the
client's token was checked (``allow_full_frames``).

The servers offer this as an ASGI scope extension, ``paxos.frame_limit``: daphne through
``daphne_server.ReapingServer``, uvicorn through ``server._limited_websocket_protocol``. Under a
server without it (a test's in-process ASGI calls), the server's own limit applies throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .auth import MAX_HANDSHAKE_FRAME

UNPROVEN_FRAME_LIMIT = MAX_HANDSHAKE_FRAME
EXTENSION = "paxos.frame_limit"


def offer(scope: dict[str, Any], allow_full: Callable[[], None]) -> None:
    """For a server: put the extension in ``scope``; ``allow_full`` restores the full limit."""
    scope.setdefault("extensions", {})[EXTENSION] = {"allow_full": allow_full}


def allow_full_frames(scope: dict[str, Any]) -> None:
    """For a consumer whose peer or client is authenticated: take frames up to the server's
    configured limit on this connection from now on."""
    extension = (scope.get("extensions") or {}).get(EXTENSION)
    if extension is not None:
        extension["allow_full"]()
