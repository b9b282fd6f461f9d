"""Websocket routes of the consensus app (peer links, live dashboard); the transport fills them."""

from django.urls import URLPattern, URLResolver, path

from consensus.transport.consumers import PeerConsumer
from consensus.transport.peers import PEER_PATH

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    # Peer links (consensus.transport): HMAC-authenticated, binary msgpack frames.
    path(PEER_PATH, PeerConsumer.as_asgi(), name="paxos-peer"),
]
