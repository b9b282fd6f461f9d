"""``consensus.routing``: websocket paths no route takes are refused cleanly (accepted, then
closed with 4404), and logged at INFO once a minute per host, not once per attempt: a client
retrying in a loop would fill the log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from consensus import routing
from consensus.routing import UNKNOWN_PATH_CLOSE_CODE, websocket_urlpatterns
from consensus.throttle import LogThrottle
from tests.fixtures.logs import consensus_logs


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> LogThrottle:
    """Each test starts with no host reported yet."""
    throttle = LogThrottle(60.0)
    monkeypatch.setattr(routing, "_unknown_path_reports", throttle, raising=False)
    return throttle


def attempt(host: str, port: int, path: str = "/ws/nope/") -> list[dict[str, Any]]:
    """One connection to ``path`` from ``host:port``: what the app sent."""
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 4404}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": path, "client": (host, port), "headers": []}
    async_to_sync(routing.unknown_path)(scope, receive, send)
    return sent


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "consensus.routing"]


def test_the_refusal_from_a_new_host() -> None:
    assert attempt("10.0.0.1", 5000) == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": routing.UNKNOWN_PATH_CLOSE_CODE},
    ]


def test_a_host_retrying_in_a_loop_is_logged_at_info_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="consensus.routing")
    with consensus_logs(caplog):
        for port in range(5000, 5050):  # a new port per attempt, as a client's retries have
            attempt("10.0.0.1", port)
        attempt("10.0.0.1", 6000, "/ws/other/")  # another path: the same host still
        attempt("10.0.0.2", 5000)  # another host is said
    levels = [level for level, _ in lines(caplog)]
    assert levels.count(logging.INFO) == 2, lines(caplog)
    assert levels.count(logging.DEBUG) == 50
    info = [message for level, message in lines(caplog) if level == logging.INFO]
    assert "'/ws/nope/'" in info[0] and "10.0.0.1" in info[0] and "DEBUG" in info[0]
    assert "10.0.0.2" in info[1]


def test_a_host_is_said_again_after_the_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clocked(LogThrottle):
        """The throttle on a clock the test moves."""

        now = 0.0

        def first(self, key: Any, now: float | None = None) -> bool:
            return super().first(key, self.now)

    throttle = Clocked(routing.UNKNOWN_PATH_REPEAT)
    monkeypatch.setattr(routing, "_unknown_path_reports", throttle)
    caplog.set_level(logging.DEBUG, logger="consensus.routing")
    with consensus_logs(caplog):
        attempt("10.0.0.1", 5000)
        throttle.now = routing.UNKNOWN_PATH_REPEAT - 1
        attempt("10.0.0.1", 5001)
        throttle.now = routing.UNKNOWN_PATH_REPEAT + 1
        attempt("10.0.0.1", 5002)
    assert [level for level, _ in lines(caplog)] == [logging.INFO, logging.DEBUG, logging.INFO]


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
