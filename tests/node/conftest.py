"""Fixtures of the node tests.

``rig``: a real ``PaxosNode`` on the test's event loop with a real ``PeerConsumer`` in front of it
(channels' communicator on the production route ``/ws/peer/``, the handshake, the codec), all on
one loop as under daphne. The test plays node 2 of a three-node config whose node 3 never answers
(nor does the real node 2: the node's own links to them stay down, and what it sends them waits
in its outbound queues).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from consensus.config import GroupSpec, NodeAddress
from consensus.core.messages import Message
from consensus.registry import registry
from consensus.routing import websocket_urlpatterns
from consensus.runtime import PaxosNode
from consensus.transport.auth import ClientHandshake
from consensus.transport.codec import encode_frame
from tests.fixtures.loop_node import one_node_config
from tests.fixtures.ports import free_port_block

FRAME = 64 * 1024
"""The node's max_frame_size: small, so that its bound (INBOUND_FRAMES frames) fills quickly."""


@dataclasses.dataclass
class Rig:
    node: PaxosNode
    peer: WebsocketCommunicator
    gates: list[threading.Event] = dataclasses.field(default_factory=list)
    """Opened at teardown, before the node stops: a failed test must not leave its writer held."""

    def gate(self, method: str) -> tuple[threading.Event, threading.Event]:
        """Make the storage's ``method`` wait (on the writer thread, as a slow disk would) until
        the first event is set; the second is set once a call waits."""
        storage = self.node.storage
        original = getattr(storage, method)
        opened, waiting = threading.Event(), threading.Event()
        self.gates.append(opened)

        def held(*args: Any) -> Any:
            waiting.set()
            opened.wait(60)
            return original(*args)

        setattr(storage, method, held)
        return opened, waiting

    async def send(self, messages: list[Message]) -> None:
        await self.peer.send_to(bytes_data=encode_frame(messages))

    async def until(self, predicate: Callable[[], bool], what: str, within: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if predicate():
                return
            assert loop.time() < deadline, f"no {what} within {within} s"
            await asyncio.sleep(0.01)

    def received(self) -> int:
        transport = self.node.transport
        assert transport is not None
        return transport.peer_stats(2).frames_received


@pytest.fixture
async def rig(tmp_path: Path, settings: Any, transactional_db: None) -> AsyncIterator[Rig]:
    settings.PAXOS_UNSAFE_SKIP_REBUILD = True  # votes at once: nodes 2 and 3 never answer
    first = free_port_block(3)
    config = dataclasses.replace(
        one_node_config(tmp_path, groups=(GroupSpec(1, "kv"),)),
        nodes=tuple(NodeAddress(n, "127.0.0.1", first + n - 1) for n in (1, 2, 3)),
    )
    node = PaxosNode(config, {1: registry.create("kv", 1)}, tick_ms=10, max_frame_size=FRAME)
    await node.start()
    peer = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/peer/")
    peer.scope["client"] = ["127.0.0.1", 4242]
    rig = Rig(node, peer)
    try:
        connected, _ = await peer.connect()
        assert connected
        handshake = ClientHandshake(config.secret.encode(), node_id=2, server_id=1)
        await peer.send_to(bytes_data=handshake.receive_challenge(await peer.receive_from()))
        handshake.receive_welcome(await peer.receive_from())
        yield rig
    finally:
        for opened in rig.gates:
            opened.set()
        await peer.disconnect()
        await node.stop()
        await sync_to_async(connections.close_all)()
