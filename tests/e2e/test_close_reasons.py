"""Websocket refusals say why in the close frame, under both servers: a peer link that breaks the
protocol and a client stream without a valid token get the close code and a short reason a
client can show (``ConnectionClosed.rcvd.reason``), not a bare 4000 or 4001. daphne 4.2.3 drops
the ASGI close event's reason; ``consensus.management.server`` makes it send it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
import websockets

from consensus.api.stream import CLOSE_UNAUTHORIZED
from consensus.transport.closecodes import CLOSE_REASON_BYTES, CloseCode, close_reason
from tests.fixtures.cluster import Cluster


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A one-node cluster on each server (a refusal needs no peers)."""
    cluster = Cluster(
        tmp_path_factory.mktemp(f"close-reasons-{request.param}"),
        size=1,
        groups=(1,),
        server=request.param,
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def closed_by_node(
    cluster: Cluster, path: str, answer: str | None = None
) -> tuple[list[bytes | str], websockets.frames.Close]:
    """Connect to ``path`` of the node (no token), send ``answer`` to the node's first frame,
    and read until the node closes: what it sent, and its close frame."""

    async def exchange() -> tuple[list[bytes | str], websockets.frames.Close]:
        url = f"ws://127.0.0.1:{cluster.nodes[1].port}{path}"
        async with websockets.connect(url, open_timeout=5, compression=None) as websocket:
            received = [await asyncio.wait_for(websocket.recv(), 5)]
            if answer is not None:
                await websocket.send(answer)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await read_until_closed(websocket, received)
        assert closed.value.rcvd is not None, "no close frame from the node"
        return received, closed.value.rcvd

    return asyncio.run(exchange())


async def read_until_closed(
    websocket: websockets.ClientConnection, into: list[bytes | str]
) -> None:
    while True:
        into.append(await asyncio.wait_for(websocket.recv(), 5))


@pytest.mark.e2e
def test_a_peer_link_that_breaks_the_protocol_is_told_why(node: Cluster) -> None:
    """A text frame where the handshake expects the Hello: PROTOCOL_ERROR, and the reason the
    node logs (``PeerConsumer._reject``)."""
    received, close = closed_by_node(node, "/ws/peer/", answer="hello")
    assert isinstance(received[0], bytes)  # the challenge
    assert close.code == CloseCode.PROTOCOL_ERROR
    assert close.reason == "sent a text frame; the peer protocol is binary"


@pytest.mark.e2e
def test_a_client_stream_without_a_token_is_told_why(node: Cluster) -> None:
    """The error frame, then the close with the same words (a client that only reads the close
    frame, a browser's ``CloseEvent.reason``, sees them too)."""
    received, close = closed_by_node(node, "/ws/client/")
    [frame] = received
    error = orjson.loads(frame)
    assert error["status"] == 401
    assert (close.code, close.reason) == (CLOSE_UNAUTHORIZED, error["error"])


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("short", "short"),
        ("x" * CLOSE_REASON_BYTES, "x" * CLOSE_REASON_BYTES),  # fits exactly: not cut
        ("x" * 200, "x" * (CLOSE_REASON_BYTES - 3) + "…"),  # the ellipsis is 3 bytes
        ("é" * 100, "é" * 60 + "…"),  # 2 bytes each: no half character
        ("a" + "€" * 50, "a" + "€" * 39 + "…"),  # 3 bytes each: 1 + 117 + 3 bytes
        ("word " * 30, ("word " * 24).rstrip() + "…"),  # 24 whole words in 120 bytes
        ("words " * 30, ("words " * 20).rstrip() + "…"),  # not the half word after them
        ("node 2: " + "x" * 200, "node 2: " + "x" * 112 + "…"),  # no word end near the cut
    ],
)
def test_close_reasons_are_cut_to_what_a_close_frame_carries(reason: str, expected: str) -> None:
    assert close_reason(reason) == expected
    assert len(expected.encode()) <= CLOSE_REASON_BYTES
