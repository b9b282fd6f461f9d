"""Websocket close codes of peer links, shared by both ends so each side can log the other's reason.

Daphne (autobahn) lets an application close only with 1000 or 3000-4999, so every error the peer
protocol defines lives in the private 4000-4999 range.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CLOSE_REASON_BYTES", "CloseCode", "close_reason", "describe"]


CLOSE_REASON_BYTES = 123
"""The longest websocket close reason, in UTF-8 bytes: a close frame's payload is at most 125
bytes (RFC 6455 §5.5), two of them the code."""


ELLIPSIS = "…"


def close_reason(reason: str) -> str:
    """``reason`` cut to ``CLOSE_REASON_BYTES`` of UTF-8: longer, it cannot be sent (websockets,
    under uvicorn, raises instead of closing). A cut reason ends at a word where one ends in its
    last third, and says it was cut with an ellipsis; the full reason is in the sender's log."""
    encoded = reason.encode("utf-8", "replace")
    if len(encoded) <= CLOSE_REASON_BYTES:
        return reason
    room = CLOSE_REASON_BYTES - len(ELLIPSIS.encode())
    kept = encoded[:room].decode("utf-8", "ignore")
    word_end = kept.rfind(" ")
    if not reason[len(kept)].isspace() and word_end >= len(kept) * 2 // 3:
        kept = kept[:word_end]  # the cut fell inside a word
    return kept.rstrip(" ,;:") + ELLIPSIS


class CloseCode(IntEnum):
    PROTOCOL_ERROR = 4000
    """A text frame, or a frame the handshake did not expect."""
    AUTH_FAILED = 4001
    """Wrong secret, unknown node id, or a malformed handshake."""
    HANDSHAKE_TIMEOUT = 4002
    """The handshake did not complete within HANDSHAKE_TIMEOUT."""
    BAD_FRAME = 4003
    """A frame failed to decode (codec.CodecError)."""
    FRAME_TOO_LARGE = 4004
    """A frame exceeded the receiver's max frame size."""
    SHUTTING_DOWN = 4005
    """The receiving node is stopping its transport."""
    INTERNAL_ERROR = 4011
    """A bug on the receiving side; the sender reconnects."""


def describe(code: int | None) -> str:
    """``"4001 AUTH_FAILED"`` for our codes, the bare number for others (e.g. 1006)."""
    try:
        return f"{code} {CloseCode(code).name}"
    except ValueError:
        return str(code)
