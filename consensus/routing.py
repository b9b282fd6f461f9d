"""Websocket routes of the consensus app (peer links, live dashboard); the transport fills them."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import URLPattern, URLResolver, path

from consensus.api.stream import CLIENT_STREAM_PATH, client_stream
from consensus.dashboard.consumers import DASHBOARD_PATH, DashboardConsumer
from consensus.transport.consumers import PeerConsumer
from consensus.transport.peers import PEER_PATH

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
]
