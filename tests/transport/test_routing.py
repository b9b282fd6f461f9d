"""``consensus.routing``: websocket paths no route takes are refused cleanly."""

from __future__ import annotations

import logging

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from consensus.routing import UNKNOWN_PATH_CLOSE_CODE, websocket_urlpatterns


@pytest.mark.parametrize("path", ["/ws/nothing/", "/", "/ws/peer", "/" + "x" * 5000])
async def test_an_unknown_websocket_path_is_closed_with_one_log_line(
    caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """Not an exception in the application (daphne's HTTP 500 and a traceback per attempt)."""
    caplog.set_level(logging.INFO)
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    connected, _ = await communicator.connect()
    assert connected
    closed = await communicator.receive_output(timeout=1)
    assert closed == {"type": "websocket.close", "code": UNKNOWN_PATH_CLOSE_CODE}
    await communicator.disconnect()
    await communicator.wait(timeout=1)
    assert len(caplog.records) == 1
    assert not caplog.records[0].exc_info and len(caplog.records[0].getMessage()) < 300
