"""``shown``: a value a remote sent, quoted in an error message at a bounded size.

Refusals name what was wrong ("unsupported handshake version ..."), and the refused value may be
anything a remote put in a frame of up to 64 KiB before authentication (16 MiB after). Quoted
whole, twenty 65 KB frames made 7.8 MB of warnings in the node's log, from anyone who can reach
its port: log lines are a disk resource, and a full disk stops a node.
"""

from __future__ import annotations

import reprlib

LIMIT = 40
"""Characters of a quoted value: enough to recognize it."""

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = LIMIT
_REPR.maxother = LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 3


def shown(value: object) -> str:
    """``repr(value)`` in at most ``LIMIT`` characters (cut with "...")."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value[:LIMIT])  # reprlib would repr all of it before cutting
    text = _REPR.repr(value)
    return text if len(text) <= LIMIT else text[: LIMIT - 3] + "..."
