"""What the load generator talks to: this service's REST API, or etcd's v3 JSON gateway."""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from consensus.aioclient import AsyncPaxosClient


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
    """The pipelining asyncio client (``consensus.aioclient.AsyncPaxosClient``): one client
    object shared by every concurrent client of the run, as an application would share it; its
    requests to the same node leave together in websocket frames."""

    urls: list[str]
    token: str
    groups: list[int]
    consistency: str = "linearizable"
    name: str = "paxos-client"
    _client: AsyncPaxosClient | None = field(default=None, init=False, repr=False)
    _next: itertools.cycle[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.groups)

    def _shared(self) -> AsyncPaxosClient:
        if self._client is None:  # created inside the run's event loop
            first, *others = [urlsplit(url).netloc for url in self.urls]
            host, _, port = first.rpartition(":")
            self._client = AsyncPaxosClient(host, int(port), self.token, nodes=others)
        return self._client

    async def put(self, session: aiohttp.ClientSession, key: str, value: str) -> None:
        await self._shared().put(key, value, next(self._next))

    async def get(self, session: aiohttp.ClientSession, key: str) -> None:
        await self._shared().get(key, next(self._next), consistency=self.consistency)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


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
