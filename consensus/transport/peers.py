"""Who the peers are (addresses) and how their links are doing (counters for status pages).

The counters are plain attribute increments on the event loop: cheap enough to do per frame, and
readable from any thread (a snapshot may be a frame out of date, which a status page does not mind).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

__all__ = ["PEER_PATH", "PeerAddress", "PeerStats"]

PEER_PATH = "ws/peer/"
"""Route of the peer consumer, relative to the site root (consensus/routing.py)."""


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """A cluster member, as in the config: ``{"id": 1, "host": "127.0.0.1", "port": 33333}``."""

    node_id: int
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"ws://{host}:{self.port}/{PEER_PATH}"


@dataclass(slots=True)
class PeerStats:
    node_id: int
    connected_out: bool = False
    """Our outbound link to this peer is open and authenticated (we can send to it)."""
    connected_in: int = 0
    """Authenticated inbound links from this peer (0 or 1; 2 briefly while it reconnects)."""
    last_error: str | None = None
    last_error_at: float | None = None
    """Wall-clock time (time.time()) of last_error."""
    frames_sent: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    dropped_overflow: int = 0
    """Outbound messages discarded because the queue was full (the oldest go first)."""
    dropped_unsendable: int = 0
    """Outbound messages discarded because they could not be encoded or exceeded the frame size,
    or were lost in a frame the connection failed under."""
    dropped_inbound: int = 0
    """Inbound messages discarded: their src/dst did not match the authenticated link, too many
    of the peer's frames waited for the runtime (``LinkOptions.inbound_bytes``), or the runtime
    found them implausible (``consensus.runtime.plausible``) or could not serve a catch-up read
    for them; ``last_error`` says which."""
    connects: int = 0
    """Successful outbound handshakes; every one after the first is a reconnect."""
    connect_failures: int = 0
    queue_length: int = 0
    """Outbound messages waiting (refreshed when a snapshot is taken)."""
    groups: list[int] | None = None
    """The groups the peer's config lists, from its last handshake; None until one told (a node
    of an earlier release, or one with too many groups for the handshake, never does)."""

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def record_error(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = time.time()

    def record_groups(self, groups: Iterable[tuple[int, str]] | None) -> None:
        """A handshake's (group, state machine) pairs; None (not told) keeps what was known."""
        if groups is not None:
            self.groups = sorted(group_id for group_id, _machine in groups)

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy."""
        data = asdict(self)
        data["connected_in"] = self.connected_in > 0
        data["inbound_links"] = self.connected_in
        data["reconnects"] = self.reconnects
        return data
