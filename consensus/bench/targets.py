"""What the load generator talks to: this service's REST API, or etcd's v3 JSON gateway."""

from __future__ import annotations

import asyncio
import base64
import itertools
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from consensus.client import PaxosClient


class Target(Protocol):
    name: str

    async def put(self, session: aiohttp.ClientSession, key: str, value: str) -> None: ...

    async def get(self, session: aiohttp.ClientSession, key: str) -> None: ...


class RequestFailed(Exception):
    pass


async def _check(response: aiohttp.ClientResponse) -> None:
    await response.read()
    if response.status >= 300:
        raise RequestFailed(f"HTTP {response.status}")


@dataclass
class PaxosRestTarget:
    """``PUT /api/kv/<g>/<key>`` and ``GET /api/kv/<g>/<key>``, spread over nodes and groups."""

    urls: list[str]
    token: str
    groups: list[int]
    consistency: str = "linearizable"
    name: str = "paxos-rest"
    _next: itertools.cycle[tuple[str, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = itertools.cycle([(u, g) for g in self.groups for u in self.urls])
        self._headers = {"Authorization": f"Bearer {self.token}"}

    async def put(self, session: aiohttp.ClientSession, key: str, value: str) -> None:
        url, group = next(self._next)
        async with session.put(
            f"{url}/api/kv/{group}/{key}", json={"value": value}, headers=self._headers
        ) as response:
            await _check(response)

    async def get(self, session: aiohttp.ClientSession, key: str) -> None:
        url, group = next(self._next)
        suffix = "?consistency=local" if self.consistency == "local" else ""
        async with session.get(
            f"{url}/api/kv/{group}/{key}{suffix}", headers=self._headers
        ) as response:
            await response.read()
            if response.status not in (200, 404):
                raise RequestFailed(f"HTTP {response.status}")


@dataclass
class PaxosClientTarget:
    """The Python client (``consensus.client.PaxosClient``, keep-alive HTTP with failover): one
    client object per concurrent client, each on its own thread, first node spread round-robin."""

    urls: list[str]
    token: str
    groups: list[int]
    consistency: str = "linearizable"
    name: str = "paxos-client"
    _clients: dict[asyncio.Task[object], tuple[PaxosClient, int]] = field(
        default_factory=dict, init=False, repr=False
    )

    def _client(self) -> tuple[PaxosClient, int]:
        task = asyncio.current_task()
        assert task is not None
        if task not in self._clients:
            number = len(self._clients)
            addresses = [urlsplit(url).netloc for url in self.urls]
            first = addresses[number % len(addresses)]
            host, _, port = first.rpartition(":")
            client = PaxosClient(host, int(port), self.token, nodes=addresses)
            self._clients[task] = (client, self.groups[number % len(self.groups)])
        return self._clients[task]

    async def put(self, session: aiohttp.ClientSession, key: str, value: str) -> None:
        client, group = self._client()
        await asyncio.to_thread(client.put, key, value, group)

    async def get(self, session: aiohttp.ClientSession, key: str) -> None:
        client, group = self._client()
        await asyncio.to_thread(client.get, key, group, consistency=self.consistency)

    def close(self) -> None:
        for client, _group in self._clients.values():
            client.close()
        self._clients.clear()


@dataclass
class EtcdTarget:
    """etcd 3.4's gRPC gateway: ``POST /v3/kv/put`` and ``/v3/kv/range`` (linearizable unless
    ``consistency`` is local, which asks for a serializable read)."""

    urls: list[str]
    consistency: str = "linearizable"
    name: str = "etcd"
    _next: itertools.cycle[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.urls)

    async def put(self, session: aiohttp.ClientSession, key: str, value: str) -> None:
        body = {"key": _b64(key), "value": _b64(value)}
        async with session.post(f"{next(self._next)}/v3/kv/put", json=body) as response:
            await _check(response)

    async def get(self, session: aiohttp.ClientSession, key: str) -> None:
        body: dict[str, object] = {"key": _b64(key)}
        if self.consistency == "local":
            body["serializable"] = True
        async with session.post(f"{next(self._next)}/v3/kv/range", json=body) as response:
            await _check(response)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
