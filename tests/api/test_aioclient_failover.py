"""``AsyncPaxosClient`` against fake stream servers: what it does when a node takes the request
and never answers (the per-attempt ``timeout``), without a cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from consensus.aioclient import AsyncPaxosClient
from consensus.client import PayloadTooLarge, Unavailable


@contextlib.asynccontextmanager
async def stream_server(
    answer: bool | Callable[[dict[str, Any]], bool],
    seen: list[dict[str, Any]],
    hello: dict[str, Any] | None = None,
    frames: list[int] | None = None,
) -> AsyncIterator[int]:
    """A node's ``/ws/client/`` stream on a free loopback port: it says hello (with ``hello``'s
    extra fields), records every request (and each frame's size in ``frames``), and answers it
    as applied in instance 7 only if ``answer`` (or ``answer(request)``)."""
    wanted = answer if callable(answer) else lambda _request: answer
    greeting = {"hello": {"nodes": {}, "leaders": {}, **(hello or {})}}

    async def handle(websocket: ServerConnection) -> None:
        await websocket.send(orjson.dumps(greeting).decode())
        async for frame in websocket:
            if frames is not None:
                frames.append(len(frame.encode() if isinstance(frame, str) else frame))
            requests = orjson.loads(frame)
            seen.extend(requests)
            requests = [request for request in requests if wanted(request)]
            if requests:
                await websocket.send(
                    orjson.dumps(
                        [
                            {
                                "id": request["id"],
                                "ok": True,
                                "instance": 7,
                                "request_id": request["request_id"],
                                "result": {"ok": True},
                                "duplicate": False,
                            }
                            for request in requests
                        ]
                    ).decode()
                )

    async with serve(handle, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


def test_a_node_that_never_answers_times_out_and_the_next_one_gets_the_retry() -> None:
    silent_seen: list[dict[str, Any]] = []
    live_seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with (
            stream_server(False, silent_seen) as silent,
            stream_server(True, live_seen) as live,
            AsyncPaxosClient(
                "127.0.0.1", silent, "t", nodes=[f"127.0.0.1:{live}"], timeout=0.3
            ) as client,
        ):
            assert await client.put("k", "v", request_id="req-1") == 7

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [r["request_id"] for r in silent_seen] == ["req-1"]
    assert "retry" not in silent_seen[0]
    # the outcome on the silent node is unknown: the same id goes on, marked as a retry
    assert [(r["request_id"], r.get("retry")) for r in live_seen] == [("req-1", True)]


def test_requests_are_split_into_frames_the_node_takes() -> None:
    """The node's hello says its frame limit: 20 commands of 1,000 bytes made at once leave in
    frames within it (one frame of 20 KB made the node drop the connection), and a command
    that fits in no frame fails at once."""
    seen: list[dict[str, Any]] = []
    frames: list[int] = []

    async def scenario() -> None:
        async with (
            stream_server(True, seen, hello={"max_frame_bytes": 5_000}, frames=frames) as port,
            AsyncPaxosClient("127.0.0.1", port, "t", timeout=5) as client,
        ):
            results = await asyncio.gather(
                *(client.submit("x" * 1_000, request_id=f"r{n}") for n in range(20))
            )
            assert results == [{"ok": True}] * 20  # the fake node's result
            with pytest.raises(PayloadTooLarge, match="does not fit in the node's frames"):
                await client.submit("x" * 6_000, request_id="too-big")

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert sorted(r["request_id"] for r in seen) == sorted(f"r{n}" for n in range(20))
    assert len(frames) > 1 and max(frames) <= 5_000, frames


@contextlib.asynccontextmanager
async def frozen_server(seen: list[dict[str, Any]]) -> AsyncIterator[int]:
    """A node that says hello, takes one frame of requests and then freezes: it reads nothing
    more, so pings go unanswered (a stopped process, a machine gone from the network). Its
    connections are cut when the test leaves it."""
    frozen: list[ServerConnection] = []
    thawed = asyncio.Event()

    async def handle(websocket: ServerConnection) -> None:
        await websocket.send(orjson.dumps({"hello": {"nodes": {}, "leaders": {}}}).decode())
        seen.extend(orjson.loads(await websocket.recv()))
        websocket.transport.pause_reading()
        frozen.append(websocket)
        await thawed.wait()

    async with serve(handle, "127.0.0.1", 0) as server:
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            for websocket in frozen:
                websocket.transport.abort()
            thawed.set()


@pytest.mark.parametrize(("keepalive", "fails_over"), [(0.2, True), (None, False)])
def test_a_frozen_node_is_given_up_on_after_keepalive_not_timeout(
    keepalive: float | None, fails_over: bool
) -> None:
    """With a long ``timeout`` (a command may wait that long on a live node), a frozen one is
    found by its missing pong, and the request goes on to the next node at once."""
    frozen_seen: list[dict[str, Any]] = []
    live_seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with (
            stream_server(True, live_seen) as live,
            frozen_server(frozen_seen) as frozen,
        ):
            client = AsyncPaxosClient(
                "127.0.0.1",
                frozen,
                "t",
                nodes=[f"127.0.0.1:{live}"],
                timeout=30,
                keepalive=keepalive,
            )
            try:
                await asyncio.wait_for(client.put("k", "v", request_id="req-1"), 2)
            finally:
                client_closed = asyncio.create_task(client.close())
        await client_closed  # after the frozen node's connections were cut

    if fails_over:
        asyncio.run(scenario())
        assert [(r["request_id"], r.get("retry")) for r in live_seen] == [("req-1", True)]
    else:  # without pings, the request waits for its timeout on the frozen node
        with pytest.raises(TimeoutError):
            asyncio.run(scenario())
    assert [r["request_id"] for r in frozen_seen] == ["req-1"]


def test_when_no_node_answers_the_call_fails_after_retry_timeout_and_says_why() -> None:
    seen: list[dict[str, Any]] = []

    async def scenario() -> float:
        async with (
            stream_server(False, seen) as silent,
            AsyncPaxosClient("127.0.0.1", silent, "t", timeout=0.2, retry_timeout=0.5) as client,
        ):
            started = asyncio.get_running_loop().time()
            with pytest.raises(Unavailable, match=rf"127\.0\.0\.1:{silent}: timed out"):
                await client.put("k", "v")
            return asyncio.get_running_loop().time() - started

    elapsed = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert 0.4 <= elapsed < 3, elapsed
    assert len(seen) >= 2  # tried again within retry_timeout, every time with the same id
    assert len({r["request_id"] for r in seen}) == 1


def test_each_request_times_out_a_full_timeout_after_it_was_made() -> None:
    """One timer serves all of a link's requests: each still waits its own full ``timeout``,
    and answered ones never time out."""

    async def scenario() -> list[tuple[str, float]]:
        async with (
            stream_server(lambda request: request["request_id"].startswith("ok"), []) as port,
            AsyncPaxosClient("127.0.0.1", port, "t", timeout=0.4, retry_timeout=0.0) as client,
        ):
            loop = asyncio.get_running_loop()

            async def timed(request_id: str, delay: float) -> tuple[str, float]:
                await asyncio.sleep(delay)
                started = loop.time()
                try:
                    await client.put("k", "v", request_id=request_id)
                except Unavailable:
                    return "timed out", loop.time() - started
                return "answered", loop.time() - started

            return await asyncio.gather(
                timed("silent-1", 0),
                timed("ok-1", 0.1),
                timed("silent-2", 0.25),
                timed("ok-2", 0.35),
            )

    silent_1, ok_1, silent_2, ok_2 = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert ok_1[0] == ok_2[0] == "answered"
    for outcome, waited in (silent_1, silent_2):
        assert outcome == "timed out" and 0.39 <= waited < 0.7, (outcome, waited)
