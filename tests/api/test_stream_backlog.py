"""The client stream's backlog (``consensus/api/stream.py``): a client that sends without reading
finds its frames unread, and one that then goes away frees the stream at once.

In-process against the fake node of ``conftest.py``; the real-process memory test is
tests/e2e/test_stream_backpressure.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from consensus.api import stream as stream_module
from consensus.api.stream import client_stream
from tests.api.conftest import TOKEN, FakeNode

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_client_that_stops_reading_then_leaves_frees_the_stream(
    stream_node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's ``send`` waits while the client does not read and raises once it is gone: the
    stream used to wait, polling, for a backlog only the gone client could drain, for good."""
    monkeypatch.setattr(stream_module, "MAX_IN_FLIGHT", 3)
    gone = asyncio.Event()

    async def scenario() -> None:
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            if len(sent) >= 2:  # after accept and hello the client reads nothing more
                await gone.wait()
                raise OSError("client disconnected")
            sent.append(message)

        scope = {
            "type": "websocket",
            "path": "/ws/client/",
            "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
        }
        await incoming.put({"type": "websocket.connect"})
        stream = asyncio.create_task(client_stream(scope, incoming.get, send))
        command = json.dumps({"op": "put", "key": "k", "value": "v"})
        for frame in range(4):
            requests = [
                {"id": f"{frame}-{i}", "op": "submit", "group": 1, "command": command}
                for i in range(3)
            ]
            await incoming.put({"type": "websocket.receive", "text": json.dumps(requests)})
        await asyncio.sleep(0.3)
        assert not stream.done()
        assert incoming.qsize() == 1  # backlogged after two frames; one read ahead, one not
        gone.set()
        await incoming.put({"type": "websocket.disconnect", "code": 1006})
        await asyncio.wait_for(stream, 2)  # it used to wait for good

    async_to_sync(scenario)()
