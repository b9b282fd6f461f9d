"""What one websocket may cost a node: frames stay small until the other side has proved who it
is, and the node can see how much it sent that the other side has not read yet.

Frame size: a node takes frames of up to ``max_frame_size`` (16 MiB) from its peers and
clients. Offered to anyone, that let a client with no secret and no token announce a 16 MiB
frame on ``/ws/peer/``, send all but its last byte and hang up: the server buffers every byte
of it, and dropped connections' buffers were not freed soon (a review measured about 480 MB
more per 30 such connections, 4.5 GB after 210). So every websocket starts with
``UNPROVEN_FRAME_LIMIT``, enough for a peer's handshake (``auth.MAX_HANDSHAKE_FRAME``), and its
consumer lifts that to the server's configured limit once the peer passed the handshake or the
client's token was checked (``allow_full_frames``).

Unsent bytes: an ASGI ``send`` never blocks, so a client that asks and never reads (a frame of
small queries for large values) made a node queue gigabytes for it. ``unsent_bytes`` tells the
client stream how much of what it sent still sits in the server's buffer, so it stops reading
and answering that client until the client reads.

The servers offer both as an ASGI scope extension, ``paxos.ws_limits``: daphne through
``daphne_server.ReapingServer``, uvicorn through ``server._limited_websocket_protocol``. Under a
server without it (a test's in-process ASGI calls), the server's own frame limit applies
throughout and nothing counts as unsent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .auth import MAX_HANDSHAKE_FRAME

UNPROVEN_FRAME_LIMIT = MAX_HANDSHAKE_FRAME
EXTENSION = "paxos.ws_limits"


def offer(scope: dict[str, Any], allow_full: Callable[[], None], unsent: Callable[[], int]) -> None:
    """For a server: put the extension in ``scope``. ``allow_full`` restores the connection's
    full frame limit; ``unsent`` returns the bytes written to it and not yet sent."""
    scope.setdefault("extensions", {})[EXTENSION] = {"allow_full": allow_full, "unsent": unsent}


def allow_full_frames(scope: dict[str, Any]) -> None:
    """For a consumer whose peer or client is authenticated: take frames up to the server's
    configured limit on this connection from now on."""
    extension = (scope.get("extensions") or {}).get(EXTENSION)
    if extension is not None:
        extension["allow_full"]()


def unsent_bytes(scope: dict[str, Any]) -> int:
    """How much of what was sent on this connection the server still holds (0 if unknown)."""
    extension = (scope.get("extensions") or {}).get(EXTENSION)
    return extension["unsent"]() if extension is not None else 0
