"""Peer transport: websocket links between the nodes of a cluster (DESIGN.md §2).

Modules, one job each:

* ``codec``      -- the binary wire format (many messages per frame); strict decoding.
* ``auth``       -- HMAC challenge-response handshake, pure functions.
* ``peers``      -- peer addresses and per-peer counters.
* ``client``     -- ``PeerLink``: outbound connection, batching sender, reconnect with backoff.
* ``consumers``  -- ``PeerConsumer``: inbound connection under daphne (route ``ws/peer/``).
* ``hub``        -- ``PeerTransport`` and ``install``/``get_transport``: the seam to the runtime.
* ``closecodes`` -- the 4xxx websocket close codes both ends agree on.

The runtime needs only what is re-exported here. ``consumers`` is not imported by this package
(it needs Django's app registry); ``consensus.routing`` imports it.
"""

from .client import LinkOptions
from .codec import CodecError, decode_frame, encode_frame
from .hub import InboundCallback, PeerTransport, daphne_options, get_transport, install, uninstall
from .peers import PeerAddress, PeerStats

__all__ = [
    "CodecError",
    "InboundCallback",
    "LinkOptions",
    "PeerAddress",
    "PeerStats",
    "PeerTransport",
    "daphne_options",
    "decode_frame",
    "encode_frame",
    "get_transport",
    "install",
    "uninstall",
]
