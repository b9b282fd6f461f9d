"""Websocket frame limits against real nodes (``consensus.transport.ws_limits``): a connection
that has not proved who it is gets frames of at most 64 KiB, so announcing a 16 MiB frame and
trickling it (or hanging up before its end) costs the node nothing; an authenticated client or
peer gets the full limit.

The attack is sent by hand on a raw socket (a frame header announcing 16 MiB, then 1 KiB): a
node that took it would wait for the rest, and the test's read would time out."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import uuid

import orjson
import pytest
import websockets

from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e

UNPROVEN_ABOVE = 16 * 1024 * 1024 - 16  # the full limit takes it: only the small one refuses it
FULL_ABOVE = 32 * 1024 * 1024


def announce_a_huge_frame(
    port: int, path: str, size: int, headers: str = "", *, with_the_upgrade: bool = False
) -> None:
    """Upgrade to a websocket on ``path``, announce a binary frame of ``size`` bytes and send 1
    KiB of it (``with_the_upgrade``: in the same write as the upgrade request, before the
    server answered it): the node must end the connection at once (daphne resets it, uvicorn
    closes it with 1009). A node that took the frame waits for the rest: the read times out (2
    s, before an unauthenticated peer's 5 s to finish its handshake)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        upgrade = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
        ).encode()
        frame = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", size) + os.urandom(4) + bytes(1024)
        sock.sendall(upgrade + frame if with_the_upgrade else upgrade)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                received += sock.recv(4096)
            assert received.startswith(b"HTTP/1.1 101"), received
            if not with_the_upgrade:
                sock.sendall(frame)
            while sock.recv(65536):  # TimeoutError here: the node waits for the whole frame
                pass
        except ConnectionResetError:
            pass


def test_an_unauthenticated_peer_cannot_announce_a_huge_frame(shared_cluster: Cluster) -> None:
    announce_a_huge_frame(shared_cluster.nodes[1].port, "/ws/peer/", UNPROVEN_ABOVE)
    port = shared_cluster.nodes[1].port
    announce_a_huge_frame(port, "/ws/peer/", UNPROVEN_ABOVE, with_the_upgrade=True)
    assert shared_cluster.request(1, "GET", "/api/status/")[0] == 200


def test_authenticated_clients_and_peers_send_large_frames(shared_cluster: Cluster) -> None:
    """A 200 KB value: a client frame and the peers' Accept frames above 64 KiB pass."""
    value = "v" * 200_000
    key = f"large-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{shared_cluster.nodes[1].port}/ws/client/"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
            await ws.recv()  # hello
            command = orjson.dumps({"op": "put", "key": key, "value": value}).decode()
            request = {"id": 1, "op": "submit", "group": 1, "command": command}
            await ws.send(orjson.dumps([request]).decode())
            (answer,) = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            assert answer["ok"] is True, answer

    asyncio.run(scenario())
    code, answer = shared_cluster.request(3, "GET", f"/api/kv/1/{key}")
    assert (code, answer.get("value")) == (200, value)
    authorization = f"Authorization: Bearer {TOKEN}\r\n"
    announce_a_huge_frame(shared_cluster.nodes[1].port, "/ws/client/", FULL_ABOVE, authorization)


def test_uvicorn_limits_unauthenticated_peers_too(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(server="uvicorn", groups=(1,))
    announce_a_huge_frame(cluster.nodes[1].port, "/ws/peer/", UNPROVEN_ABOVE)
    # (Bytes sent with the upgrade request never reach uvicorn's websocket protocol: its HTTP
    # protocol hands over the request alone. The limit is set before any byte is parsed anyway.)
    key = f"large-{uuid.uuid4().hex[:8]}"
    code, answer = cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": "v" * 200_000})
    assert code == 200, answer
    code, answer = cluster.request(2, "GET", f"/api/kv/1/{key}")
    assert code == 200 and len(answer["value"]) == 200_000
