"""Fixtures of the API tests: an in-process fake node (no Paxos, the real state machines) for
fast validation tests with Django's test client; live clusters come from ``tests.fixtures``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import Client

from consensus.api.stream import client_stream
from consensus.registry import registry
from consensus.runtime import Outcome, UnknownGroupError, install_node
from consensus.runtime.node import GroupStatus
from consensus.statemachine import ApplyContext, StateMachine

TOKEN = "unit-test-token"
STREAM_SCOPE = {
    "type": "websocket",
    "path": "/ws/client/",
    "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
}


class StreamSession:
    """One in-process connection to the client stream's ASGI application (``open_stream``)."""

    def __init__(self, incoming: asyncio.Queue[Any], outgoing: asyncio.Queue[Any]) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self.hello: dict[str, Any] = {}

    async def send(self, requests: list[dict[str, Any]]) -> None:
        await self.incoming.put({"type": "websocket.receive", "text": json.dumps(requests)})

    async def answers(self, count: int, wait: float = 5.0) -> dict[Any, dict[str, Any]]:
        """The next ``count`` answers, by id (a client id answered twice counts twice)."""
        answers: dict[Any, dict[str, Any]] = {}
        got = 0
        while got < count:
            message = await asyncio.wait_for(self.outgoing.get(), wait)
            assert message["type"] == "websocket.send", message  # never a close
            for answer in json.loads(message["text"]):
                answers[answer["id"]] = answer
                got += 1
        return answers


@contextlib.asynccontextmanager
async def open_stream() -> AsyncIterator[StreamSession]:
    """A connected stream (accepted, its hello read); disconnected and finished at the end."""
    session = StreamSession(asyncio.Queue(), asyncio.Queue())
    await session.incoming.put({"type": "websocket.connect"})
    stream = asyncio.create_task(
        client_stream(STREAM_SCOPE, session.incoming.get, session.outgoing.put)
    )
    try:
        assert (await asyncio.wait_for(session.outgoing.get(), 5))["type"] == "websocket.accept"
        hello = await asyncio.wait_for(session.outgoing.get(), 5)
        session.hello = json.loads(hello["text"])["hello"]
        yield session
    finally:
        await session.incoming.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(stream, 5)


class FakeNode:
    """Stands in for ``PaxosNode`` where the API meets it: ``submit``, ``read_barrier``,
    ``check_serving``, ``check_local_reads``, ``replicas``, ``machines``, ``status``. Commands
    are applied at once to the real state machines (in a transaction, as the runtime does);
    ``fail`` makes every call raise."""

    node_id = 1
    max_frame_size = 16 * 1024 * 1024

    def __init__(self, machines: dict[int, str]) -> None:
        self.machines: dict[int, StateMachine] = {
            group_id: registry.create(name, group_id) for group_id, name in machines.items()
        }
        self.replicas: dict[int, object] = {group_id: object() for group_id in machines}
        self.config = SimpleNamespace(group_ids=tuple(sorted(machines)))
        self.applied: dict[int, int] = dict.fromkeys(machines, 0)
        self.results: dict[tuple[int, str], Outcome] = {}
        self.submitted: list[tuple[int, str, str]] = []
        self.barriers = 0
        self.fail: Exception | None = None

    def is_starting(self, group_id: int) -> bool:
        return False

    def check_serving(self, group_id: int) -> None:
        if group_id not in self.replicas:
            raise UnknownGroupError(group_id)

    check_local_reads = check_serving  # a fake node never rebuilds

    async def submit(
        self, group_id: int, payload: str, request_id: str | None = None, timeout: Any = None
    ) -> Outcome:
        if group_id not in self.replicas:
            raise UnknownGroupError(group_id)
        if self.fail is not None:
            raise self.fail
        request_id = request_id or uuid.uuid4().hex
        earlier = self.results.get((group_id, request_id))
        if earlier is not None:
            return Outcome(group_id, request_id, earlier.instance, earlier.result, duplicate=True)
        self.submitted.append((group_id, request_id, payload))
        instance = self.applied[group_id] + 1
        result = await sync_to_async(self._apply)(group_id, payload, instance, request_id)
        self.applied[group_id] = instance
        outcome = Outcome(group_id, request_id, instance, result)
        self.results[(group_id, request_id)] = outcome
        return outcome

    def _apply(self, group_id: int, payload: str, instance: int, request_id: str) -> Any:
        with transaction.atomic():
            return self.machines[group_id].apply(
                payload, ApplyContext(group_id, instance, request_id)
            )

    async def read_barrier(self, group_id: int, timeout: Any = None) -> int:
        if group_id not in self.replicas:
            raise UnknownGroupError(group_id)
        if self.fail is not None:
            raise self.fail
        self.barriers += 1
        return self.applied[group_id]

    def group_status(self, group_id: int) -> GroupStatus:
        return GroupStatus(
            group_id, "leader", 1, "1.1", "1.1", self.applied[group_id], self.applied[group_id], 0
        )

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "uptime_seconds": 1.0,
            "groups": [vars(self.group_status(g)) for g in self.replicas],
            "peers": {"node_id": 1, "running": True, "unroutable": 0, "peers": []},
        }


@pytest.fixture
def fake_node(settings: Any) -> Iterator[FakeNode]:
    """Groups 1 and 2 run the KV store, group 3 the log-only machine; ``TOKEN`` is accepted."""
    settings.PAXOS_API_TOKENS = (TOKEN,)
    node = FakeNode({1: "kv", 2: "kv", 3: "log"})
    install_node(node)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        install_node(None)


@pytest.fixture
def no_quorum(fake_node: FakeNode) -> FakeNode:
    from consensus.runtime import NoQuorumError

    fake_node.fail = NoQuorumError("group 1: no leader is known within 5s", retry_after=2.0)
    return fake_node


class ApiClient:
    """Django's test client with the bearer token and JSON bodies by default."""

    def __init__(self, client: Client, token: str | None = TOKEN) -> None:
        self.client = client
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        token: str | None | type[Ellipsis] = ...,
        headers: dict[str, str] | None = None,
    ) -> Any:
        import json

        token = self.token if token is ... else token
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        data: Any = raw if raw is not None else (None if body is None else json.dumps(body))
        return self.client.generic(
            method.upper(),
            path,
            data=data if data is not None else "",
            content_type="application/json",
            headers=all_headers,
        )


@pytest.fixture
def api(client: Client, fake_node: FakeNode) -> ApiClient:
    return ApiClient(client)


@pytest.fixture
def stream_node(fake_node: FakeNode) -> FakeNode:
    """The fake node with what the stream uses besides what REST uses."""
    node: Any = fake_node
    node.config.nodes = ()
    node.replicas = {group: SimpleNamespace(leader_id=1) for group in node.replicas}
    node.request_timeout = 5.0
    node.observer = SimpleNamespace(request_finished=lambda *args: None)
    node.forget = lambda group_id, request_id: None
    node.submit_nowait = lambda group_id, payload, request_id: asyncio.ensure_future(
        fake_node.submit(group_id, payload, request_id)
    )

    async def run_between_applications(fn: Any, *args: Any) -> Any:
        return fn(*args)

    node.run_between_applications = run_between_applications
    return fake_node
