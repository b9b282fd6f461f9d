"""``AsyncPaxosClient`` against fake nodes that fail in odd ways (a first frame that is no hello,
a connection that never opens, ports that refuse connections), and ``close()`` while calls are
in flight: the calls end with the client's errors (``Unavailable``, ``ClientClosed``), go on to
the next node, keep to ``retry_timeout`` and back off; none outlives ``close()``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from consensus import aioclient
from consensus.aioclient import AsyncPaxosClient, ClientClosed
from consensus.client import NotFound, PaxosError, Unavailable
from consensus.config import free_ports
from tests.api.test_aioclient_failover import stream_server
from tests.fixtures.cluster import TOKEN, Cluster
from tests.fixtures.http import hanging_nodes
from tests.fixtures.polling import wait_until

HELLO = orjson.dumps({"hello": {"nodes": {}, "leaders": {}}}).decode()
"""The hello of a node that says nothing of what a submit may hold (an older release)."""
HELLO_WITH_MACHINE = orjson.dumps(
    {"hello": {"nodes": {}, "leaders": {}, "submit_fields": ["command", "machine"]}}
).decode()


@contextlib.asynccontextmanager
async def fake_stream(handle: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[int]:
    """A websocket server on a free loopback port that runs ``handle`` for each connection."""
    async with serve(handle, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


async def first_frame_then_wait(frame: str, websocket: ServerConnection) -> None:
    await websocket.send(frame)
    await websocket.wait_closed()  # the client's close


async def hello_then_close(websocket: ServerConnection) -> None:
    await websocket.send(HELLO)
    await websocket.close()


ODD_NODES: dict[str, Callable[[ServerConnection], Awaitable[None]]] = {
    "hello, then close": hello_then_close,
    "not JSON": lambda ws: first_frame_then_wait("<html>502 Bad Gateway</html>", ws),
    "a JSON list": lambda ws: first_frame_then_wait("[]", ws),
    "an object without hello": lambda ws: first_frame_then_wait('{"welcome": 1}', ws),
    "a hello that is no object": lambda ws: first_frame_then_wait('{"hello": 5}', ws),
    "a hello with a list of nodes": lambda ws: first_frame_then_wait(
        '{"hello": {"nodes": []}}', ws
    ),
    "a hello with a limit that is no number": lambda ws: first_frame_then_wait(
        '{"hello": {"max_frame_bytes": "lots"}}', ws
    ),
}


@pytest.mark.parametrize("kind", ODD_NODES)
def test_a_node_whose_stream_is_not_a_nodes_is_unavailable(kind: str) -> None:
    """Alone, it fails the call with ``Unavailable`` after ``retry_timeout`` (not the client's
    private ``_LinkLost``, a JSON error or an ``AttributeError``); before a live node, the call
    goes on to that one."""
    seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with fake_stream(ODD_NODES[kind]) as odd, stream_server(True, seen) as live:
            async with AsyncPaxosClient("127.0.0.1", odd, "t", retry_timeout=0.3) as alone:
                with pytest.raises(Unavailable, match=f"127.0.0.1:{odd}"):
                    await alone.put("k", "v")
            nodes = [f"127.0.0.1:{live}"]
            async with AsyncPaxosClient("127.0.0.1", odd, "t", nodes=nodes) as client:
                assert await client.put("k", "v", request_id="req-1") == 7

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [r["request_id"] for r in seen] == ["req-1"]


# -- retry_timeout and backing off ---------------------------------------------------------------


def test_no_attempt_starts_after_retry_timeout() -> None:
    """Three nodes that take the connection and never open the websocket: the first attempt
    waits its ``timeout`` (1 s), and then the call ends (it tried all three, 3 s, before)."""

    async def scenario() -> float:
        with hanging_nodes(3) as nodes:
            (host, port), *others = nodes
            client = AsyncPaxosClient(host, port, "t", nodes=others, timeout=1, retry_timeout=0.2)
            started = time.monotonic()
            async with client:
                with pytest.raises(Unavailable, match="timed out"):
                    await client.put("k", "v")
            return time.monotonic() - started

    elapsed = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert 0.9 < elapsed < 2.5, elapsed


def test_a_retry_waits_at_most_the_time_left() -> None:
    """The first node refuses the connection, the second takes the request and never answers:
    the call ends when ``retry_timeout`` (0.5 s) runs out, not after the second node's
    ``timeout`` (5 s)."""
    (dead,) = free_ports(1)
    seen: list[dict[str, Any]] = []

    async def scenario() -> float:
        async with stream_server(False, seen) as silent:
            client = AsyncPaxosClient(
                "127.0.0.1", dead, "t", nodes=[f"127.0.0.1:{silent}"], timeout=5, retry_timeout=0.5
            )
            started = time.monotonic()
            async with client:
                with pytest.raises(Unavailable, match=f"127.0.0.1:{silent}: timed out"):
                    await client.put("k", "v")
            return time.monotonic() - started

    elapsed = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert 0.4 < elapsed < 3, elapsed
    assert len(seen) == 1


def test_a_call_backs_off_while_no_node_takes_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 calls for 1.2 s against two ports that refuse connections: rounds 0.1, 0.2, 0.4,
    0.8 s apart (``retry_pause``), a connection attempt per node and round shared by the calls
    (every 50 ms before: 50 and more, and the CPU of a busy loop with 1,000 calls)."""
    dead = free_ports(2)
    opened: list[float] = []
    real_open = aioclient._Link.open.__func__  # type: ignore[attr-defined]

    async def counting_open(cls: type, *args: Any, **kwargs: Any) -> Any:
        opened.append(time.monotonic())
        return await real_open(cls, *args, **kwargs)

    monkeypatch.setattr(aioclient._Link, "open", classmethod(counting_open))

    async def scenario() -> list[BaseException | int]:
        nodes = [f"127.0.0.1:{dead[1]}"]
        async with AsyncPaxosClient("127.0.0.1", dead[0], "t", nodes=nodes, retry_timeout=1.2) as c:
            return await asyncio.gather(
                *(c.put(f"k{n}", "v") for n in range(100)), return_exceptions=True
            )

    results = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert all(isinstance(result, Unavailable) for result in results), results[:3]
    # about 5 rounds x 2 nodes; 18 seen on a loaded machine; without the backoff 50 and more
    assert 2 <= len(opened) <= 25, len(opened)


# -- close() -------------------------------------------------------------------------------------


def test_close_ends_the_calls_waiting_for_an_answer_and_they_go_nowhere_else() -> None:
    """A node that takes requests and never answers; ``close()`` while 20 calls wait: each
    fails at once with ``ClientClosed`` and its request id (the outcome of a write is unknown),
    none goes to a new connection (they failed over and reconnected before), and a call made
    after ``close()`` fails too."""
    seen: list[dict[str, Any]] = []

    async def scenario() -> list[BaseException | int]:
        async with stream_server(False, seen) as silent:
            client = AsyncPaxosClient("127.0.0.1", silent, "t", timeout=30, retry_timeout=30)
            calls = [
                asyncio.create_task(client.put(f"k{n}", "v", request_id=f"req-{n}"))
                for n in range(20)
            ]
            await wait_until(lambda: len(seen) == 20)
            await client.close()
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1.0)
            assert not client._links and not client._connecting
            with pytest.raises(ClientClosed, match="the client is closed"):
                await client.put("k", "v")
            await asyncio.sleep(0.2)  # time to reconnect, if anything still tried to
            return results

    results = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert all(isinstance(result, ClientClosed) for result in results), results[:3]
    assert [error.request_id for error in results] == [f"req-{n}" for n in range(20)]  # type: ignore[union-attr]
    assert len(seen) == 20 and not any(request.get("retry") for request in seen)


def test_close_cancels_a_connection_being_opened() -> None:
    """A node that takes the connection and never opens the websocket (``timeout`` 30 s): the
    call waiting for it fails with ``ClientClosed`` as soon as ``close()`` is called, and
    nothing is left connecting."""

    async def scenario() -> None:
        with hanging_nodes(1) as [(host, port)]:
            client = AsyncPaxosClient(host, port, "t", timeout=30, retry_timeout=30)
            call = asyncio.create_task(client.put("k", "v"))
            await wait_until(lambda: client._connecting)
            [connecting] = client._connecting.values()
            await asyncio.sleep(0.1)
            await asyncio.wait_for(client.close(), 1.0)
            assert connecting.done() and not client._connecting
            with pytest.raises(ClientClosed):
                await asyncio.wait_for(call, 1.0)

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_close_wakes_the_calls_waiting_to_retry() -> None:
    """Calls backing off between rounds (every node refuses connections; ``retry_timeout``
    30 s) end at ``close()``, not after ``retry_timeout``."""
    (dead,) = free_ports(1)

    async def scenario() -> None:
        client = AsyncPaxosClient("127.0.0.1", dead, "t", retry_timeout=30)
        calls = [asyncio.create_task(client.put(f"k{n}", "v")) for n in range(10)]
        await asyncio.sleep(0.5)  # a few rounds: they back off by now
        await client.close()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1.0)
        assert all(isinstance(result, ClientClosed) for result in results), results[:3]

    asyncio.run(asyncio.wait_for(scenario(), 10))


# -- the KV store's helpers ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def answering_stream(
    answer: Callable[[dict[str, Any]], dict[str, Any]],
    seen: list[dict[str, Any]],
    hello: str = HELLO_WITH_MACHINE,
) -> AsyncIterator[int]:
    """A node that says ``hello`` and answers each request with ``answer(request)`` (its
    ``id`` added), recording the requests in ``seen``."""

    async def handle(websocket: ServerConnection) -> None:
        await websocket.send(hello)
        async for frame in websocket:
            requests = orjson.loads(frame)
            seen.extend(requests)
            answers = [{**answer(request), "id": request["id"]} for request in requests]
            await websocket.send(orjson.dumps(answers).decode())

    async with fake_stream(handle) as port:
        yield port


def applied(result: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Answers: every submit applied in instance 9 with this ``result``."""
    return lambda request: {
        "ok": True,
        "instance": 9,
        "request_id": request["request_id"],
        "result": result,
        "duplicate": False,
    }


@pytest.mark.parametrize("takes_machine", [True, False], ids=["node-takes-it", "older-node"])
def test_the_kv_helpers_say_their_commands_are_for_the_kv_store(takes_machine: bool) -> None:
    """put, delete and cas send ``"machine": "kv"`` (a node refuses them with 404 on a group
    of another state machine); ``submit`` sends any command to any machine, so it does not.
    A node whose hello does not list the field (an older release, which refuses an unknown
    field with 400) gets the commands without it."""
    seen: list[dict[str, Any]] = []
    hello = HELLO_WITH_MACHINE if takes_machine else HELLO

    async def scenario() -> None:
        result = {"key": "k", "value": "v", "deleted": True, "succeeded": True}
        async with (
            answering_stream(applied(result), seen, hello) as port,
            AsyncPaxosClient("127.0.0.1", port, "t") as client,
        ):
            await client.put("k", "v", group=3)
            assert await client.delete("k", group=3) is True
            assert (await client.cas("k", None, "v", group=3)).succeeded
            await client.submit('{"op": "put", "key": "k", "value": "v"}', group=3)

    asyncio.run(asyncio.wait_for(scenario(), 10))
    machine = "kv" if takes_machine else None
    assert [(r["group"], r.get("machine")) for r in seen] == [(3, machine)] * 3 + [(3, None)]
    assert orjson.loads(seen[0]["command"]) == {"op": "put", "key": "k", "value": "v"}


def test_a_group_that_does_not_run_the_kv_store_is_not_found() -> None:
    """A node's 404 for a KV command to another machine is ``NotFound``; and where a node took
    it (a release without the check), a result without the KV store's fields is ``NotFound``
    naming the instance it was applied in, not a ``KeyError``."""
    refused = 'group 3 does not run the KV store ("kv"); it runs "log"'

    async def scenario() -> None:
        not_kv = applied({"instance": 9, "bytes": 40})  # the log machine's result
        async with (
            answering_stream(lambda _r: {"ok": False, "status": 404, "error": refused}, []) as new,
            answering_stream(not_kv, [], HELLO) as old,
        ):
            async with AsyncPaxosClient("127.0.0.1", new, "t") as client:
                with pytest.raises(NotFound, match="does not run the KV store") as raised:
                    await client.delete("k", group=3, request_id="req-1")
                assert raised.value.request_id == "req-1"
            async with AsyncPaxosClient("127.0.0.1", old, "t") as client:
                with pytest.raises(NotFound, match=r"group 3 does not run the KV store \(the "
                                   r"command was applied there, in instance 9\)"):  # fmt: skip
                    await client.delete("k", group=3)
                with pytest.raises(NotFound, match="'succeeded'") as raised:
                    await client.cas("k", None, "v", group=3, request_id="req-2")
                assert raised.value.request_id == "req-2"

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_an_unavailable_write_carries_its_generated_request_id() -> None:
    """The id the client made up for a write is on its ``Unavailable``: the outcome is
    unknown, and a retry must reuse it."""
    seen: list[dict[str, Any]] = []

    async def scenario() -> PaxosError:
        async with (
            stream_server(False, seen) as silent,
            AsyncPaxosClient("127.0.0.1", silent, "t", timeout=0.2, retry_timeout=0.1) as client,
        ):
            with pytest.raises(Unavailable) as raised:
                await client.put("k", "v")
            return raised.value

    error = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert error.request_id is not None and error.request_id == seen[0]["request_id"]


@pytest.mark.e2e
def test_a_real_node_refuses_kv_commands_to_a_group_of_another_machine(
    cluster_factory: Callable[..., Cluster],
) -> None:
    """One node, group 3 running the log machine: put, delete and cas get ``NotFound`` from
    the node before anything is proposed (group 3's log stays empty), and a get too."""
    groups = [{"id": 1, "stateMachine": "kv"}, {"id": 3, "stateMachine": "log"}]
    cluster = cluster_factory(size=1, groups=(1, 3), config_overrides={1: {"groups": groups}})

    async def scenario() -> None:
        node = cluster.nodes[1]
        async with AsyncPaxosClient("127.0.0.1", node.port, TOKEN) as client:
            assert await client.put("k", "v", group=1) >= 1  # group 1 runs the KV store
            calls = {
                "put": client.put("k", "v", group=3, request_id="req-put"),
                "delete": client.delete("k", group=3, request_id="req-delete"),
                "cas": client.cas("k", None, "v", group=3, request_id="req-cas"),
            }
            for name, call in calls.items():
                with pytest.raises(NotFound, match="group 3 does not run the KV store") as raised:
                    await call
                assert raised.value.request_id == f"req-{name}"
            with pytest.raises(NotFound, match="group 3"):
                await client.get("k", group=3)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert not [value for _instance, value in cluster.chosen_log(1, 3) if "req-" in value]
