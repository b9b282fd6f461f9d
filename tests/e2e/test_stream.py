"""The pipelined client stream (``/ws/client/``) and ``AsyncPaxosClient`` against real nodes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import orjson
import pytest
import websockets

from consensus.aioclient import AsyncPaxosClient
from consensus.client import AuthError, BadRequest, NotFound
from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e


def client_for(
    cluster: Cluster, first: int = 1, token: str = TOKEN, **options: Any
) -> AsyncPaxosClient:
    node = cluster.nodes[first]
    return AsyncPaxosClient("127.0.0.1", node.port, token, **options)


def test_pipelined_writes_and_reads_through_one_client(shared_cluster: Cluster) -> None:
    prefix = uuid.uuid4().hex[:8]

    async def scenario() -> None:
        async with client_for(shared_cluster, first=2) as client:
            instances = await asyncio.gather(
                *(client.put(f"{prefix}-{i}", f"v{i}", group=1 + i % 2) for i in range(300))
            )
            assert all(instance > 0 for instance in instances)
            values = await asyncio.gather(
                *(client.get(f"{prefix}-{i}", group=1 + i % 2) for i in range(300))
            )
            assert values == [f"v{i}" for i in range(300)]
            assert await client.get(f"{prefix}-0", consistency="local") in (None, "v0")
            assert await client.get(f"{prefix}-absent", default="none") == "none"
            swapped = await client.cas(f"{prefix}-0", "v0", "w0")
            assert swapped.succeeded and swapped.value == "w0"
            assert not (await client.cas(f"{prefix}-0", "v0", "x")).succeeded
            assert await client.delete(f"{prefix}-0") is True
            assert await client.get(f"{prefix}-0") is None
            seed = json.dumps({"type": "put", "key": f"{prefix}-seed", "value": "Mike"})
            assert (await client.submit(seed, 2))["value"] == "Mike"
            assert await client.get(f"{prefix}-seed", group=2) == "Mike"

    asyncio.run(scenario())


def test_a_request_id_is_applied_once(shared_cluster: Cluster) -> None:
    key = f"once-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with client_for(shared_cluster) as client:
            command = {"op": "put", "key": key, "value": "1"}
            first = await client.submit_command(command, 1, request_id=key)
            started = time.monotonic()
            again = await client.submit_command(command, 1, request_id=key)
            assert not first.duplicate
            assert again.duplicate and again.instance == first.instance
            # Answered from the stored result at once: the leader does not propose a command it
            # saw chosen again, and once nobody answered such a resend until the client's
            # timeout (10 s) sent it elsewhere marked as a retry.
            assert time.monotonic() - started < 2
            answers = await raw_exchange(
                shared_cluster,
                [
                    {
                        "id": 1,
                        "op": "submit",
                        "group": 1,
                        "command": json.dumps(command),
                        "request_id": key,
                        "retry": True,
                    },
                    {"id": 2, "op": "submit", "group": 1, "command": "{}", "request_id": key},
                ],
            )
            assert answers[0]["duplicate"] and answers[0]["instance"] == first.instance
            # the same request id for another command while the first waits on this stream
            assert answers[1]["status"] == 409
            other = {"id": 3, "op": "submit", "group": 1, "command": "{}", "request_id": key}
            answers = await raw_exchange(shared_cluster, [other])
            assert answers[0]["status"] == 409  # the same request id for another command

    asyncio.run(scenario())


async def raw_exchange(
    cluster: Cluster, frame: Any, node_id: int = 1, token: str = TOKEN
) -> list[dict[str, Any]]:
    """Send one frame (bytes or str are sent as they are) and return the answers to it."""
    url = f"ws://127.0.0.1:{cluster.nodes[node_id].port}/ws/client/"
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers) as websocket:
        hello = orjson.loads(await websocket.recv())
        assert hello["hello"]["node_id"] == node_id
        text = frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        await websocket.send(text)
        expected = len(frame) if isinstance(frame, list) else 1
        answers: list[dict[str, Any]] = []
        while len(answers) < expected:
            answers.extend(orjson.loads(await asyncio.wait_for(websocket.recv(), 10)))
        return sorted(answers, key=lambda answer: str(answer["id"]))


def test_bad_requests_get_errors_and_the_stream_stays_usable(shared_cluster: Cluster) -> None:
    async def scenario() -> None:
        assert (await raw_exchange(shared_cluster, "not json"))[0]["status"] == 400
        assert (await raw_exchange(shared_cluster, b"\xff\x00"))[0]["status"] == 400
        assert (await raw_exchange(shared_cluster, "42"))[0]["status"] == 400
        frame = [
            {"op": "submit", "group": 1, "command": "x"},  # no id
            {"id": "b", "op": "drop", "group": 1},
            {"id": "c", "op": "submit", "group": "one", "command": "x"},
            {"id": "d", "op": "submit", "group": 99, "command": "x"},
            {"id": "e", "op": "submit", "group": 1, "command": 7},
            {"id": "f", "op": "query", "group": 1, "query": '{"op": "put", "key": "k"}'},
            {"id": "g", "op": "submit", "group": 1, "command": "x", "request_id": "paxos:x"},
            {"id": "h", "op": "query", "group": 1, "query": "{}", "consistency": "fast"},
            {"id": "i", "op": "query", "group": 1, "query": '{"op": "get", "key": "k"}'},
            {"id": "j", "op": "submit", "group": 1, "comand": "x"},  # a typo: not ignored
            {"id": "k", "op": "submit", "group": 1, "command": "x", "retry": "yes"},
            {"id": "l", "op": "query", "group": 1, "query": "{}", "request_id": "r"},
        ]
        answers = await raw_exchange(shared_cluster, frame)
        statuses = {answer["id"]: answer.get("status", 200) for answer in answers}
        assert statuses == {
            None: 400,
            "b": 400,
            "c": 400,
            "d": 404,
            "e": 400,
            "f": 400,
            "g": 400,
            "h": 400,
            "i": 200,
            "j": 400,
            "k": 400,
            "l": 400,
        }
        assert "unknown field 'comand'" in next(a for a in answers if a["id"] == "j")["error"]
        assert "unknown group 99" in next(a for a in answers if a["id"] == "d")["error"]
        # the node is still up and serving
        async with client_for(shared_cluster) as client:
            await client.put(f"alive-{uuid.uuid4().hex[:6]}", "yes")

    asyncio.run(scenario())


def test_unauthenticated_streams_are_refused(shared_cluster: Cluster) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{shared_cluster.nodes[1].port}/ws/client/"
        async with websockets.connect(url) as websocket:
            first = orjson.loads(await websocket.recv())
            assert "token" in first["error"] and first["status"] == 401
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await websocket.recv()
            assert closed.value.rcvd.code == 4001
        with pytest.raises(AuthError):
            async with client_for(shared_cluster, token="wrong") as client:
                await client.put("k", "v")

    asyncio.run(scenario())


def test_unknown_groups_and_bad_commands_raise_client_errors(shared_cluster: Cluster) -> None:
    async def scenario() -> None:
        async with client_for(shared_cluster) as client:
            with pytest.raises(NotFound):
                await client.put("k", "v", group=42)
            with pytest.raises(BadRequest, match="the key must not be empty"):
                await client.put("", "v")

    asyncio.run(scenario())


def test_writes_in_flight_survive_the_leader_being_killed(cluster_factory) -> None:
    """Every put the client acknowledged is readable afterwards, with its value, although the
    leader died while hundreds of them were in flight (they failed over with their ids)."""
    cluster: Cluster = cluster_factory(groups=(1,))
    leader = cluster.wait_for_leader(1)
    others = [n for n in cluster.nodes if n != leader]

    async def scenario() -> None:
        nodes = [("127.0.0.1", cluster.nodes[n].port) for n in others]
        async with client_for(cluster, first=leader, nodes=nodes, retry_timeout=30) as client:
            acknowledged: dict[str, str] = {}

            async def writer(number: int) -> None:
                for round_number in range(40):
                    key, value = f"w{number}", f"{round_number}"
                    await client.put(key, value)
                    acknowledged[key] = value

            writers = [asyncio.create_task(writer(n)) for n in range(50)]
            await asyncio.sleep(0.5)
            cluster.kill_node(leader)
            killed = time.monotonic()
            await asyncio.gather(*writers)
            assert time.monotonic() - killed < 30
            assert len(acknowledged) == 50
            for key, value in acknowledged.items():
                assert await client.get(key) == value

    asyncio.run(scenario())


def test_a_state_machine_without_queries_answers_400(cluster_factory) -> None:
    """The ``log`` machine keeps its state in memory (queries run on the writer thread) and
    answers no queries; its commands still work through the stream."""
    cluster: Cluster = cluster_factory(groups=(1,), state_machine="log")

    async def scenario() -> None:
        async with client_for(cluster) as client:
            await client.submit("anything", 1)
            with pytest.raises(BadRequest, match="does not answer queries"):
                await client.query("anything", 1)

    asyncio.run(scenario())
