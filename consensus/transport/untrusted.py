"""What a peer may put in a frame: ``shown`` quotes its values in errors at a bounded size, and
``INT_LIMITS`` bounds every integer field of a peer message.

Quoting: refusals name what was wrong ("unsupported handshake version ..."), and the refused
value may be anything a remote put in a frame of up to 64 KiB before authentication (16 MiB
after). Quoted whole, twenty 65 KB frames made 7.8 MB of warnings in the node's log, from anyone
who can reach its port: log lines are a disk resource, and a full disk stops a node.

Integer ranges: a peer knows the secret, so it is trusted to follow Paxos, not to be free of bugs,
bit flips or a wrong config. ``codec.decode_frame`` refuses a frame with an integer out of its
field's range as malformed (the consumer closes the link, ``BAD_FRAME``, and logs one line), so
that such a value never reaches the replicas, the database or a ``range()``:

* ``MAX_ID`` for node and group ids (``group_id``, ``src``, ``dst``, a ballot's node): the
  config's range (``consensus.config.MAX_ID``) and what the database's ``integer`` columns hold.
  A ballot of node 2**40 was promised and written on SQLite, and stopped a node on PostgreSQL
  ("integer out of range", a storage failure).
* ``MAX_SEQUENCE`` for instances, chosen prefixes and ballot rounds: they count up one by one
  (a million instances a second take 146,000 years to reach it), and the factor of two below the
  64-bit columns leaves room for the ``+ 1`` and ``+ window`` the node adds to them. A Prepare of
  round 2**63-1 was promised and written; every later campaign then needed round 2**63, which no
  peer decodes, and the group had no leader again, also after restarts (a review reproduced it).
* ``MAX_INT`` for the rest (sequence numbers of heartbeats, random tokens and nonces, digests),
  which are only compared or echoed.

A value in range can still be far from anything the node knows (a round 2**40 above its promise,
an instance a million above the chosen prefix: a filled gap of that many instances on the next
leader); ``consensus.runtime.plausible`` drops such messages before the replicas see them.
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


MAX_ID = 2**31 - 1
"""Node and group ids, and a ballot's node id."""
MAX_SEQUENCE = 2**62 - 1
"""Instance numbers (and chosen prefixes, read indexes, digest windows' ends) and ballot rounds."""
MAX_INT = 2**63 - 1
"""Any other integer: what a signed 64-bit column holds."""

INT_LIMITS: dict[str, int] = {
    "group_id": MAX_ID,
    "src": MAX_ID,
    "dst": MAX_ID,
    "instance": MAX_SEQUENCE,
    "first_instance": MAX_SEQUENCE,
    "last_instance": MAX_SEQUENCE,
    "chosen_upto": MAX_SEQUENCE,
    "highest_instance": MAX_SEQUENCE,
    "seen_instance": MAX_SEQUENCE,
    "voted": MAX_SEQUENCE,
    "index": MAX_SEQUENCE,
    "first": MAX_SEQUENCE,
    "last": MAX_SEQUENCE,
    "round": MAX_SEQUENCE,
    "seq": MAX_INT,
    "token": MAX_INT,
    "nonce": MAX_INT,
    "window": MAX_INT,
    "digest": MAX_INT,
}
"""The largest value of every integer field of a peer message, by field name (the smallest is
0). A message class that gains an integer field missing here makes the codec's import fail: decide
its range then. Each limit is ``2**k - 1``, which lets the codec range-check many fields with one
comparison of their bitwise OR."""

BALLOT_ROUND_LIMIT = MAX_SEQUENCE
BALLOT_NODE_LIMIT = MAX_ID
