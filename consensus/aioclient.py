"""Asyncio client with pipelining: ``AsyncPaxosClient``, many requests in flight per connection.

``PaxosClient`` (consensus/client.py) makes one HTTP request per command: simple, standard
library only, and about a millisecond of server CPU per command. This client speaks the node's
websocket stream (``/ws/client/``, see consensus/api/stream.py) instead: every coroutine that
calls it gets its own answer, but requests made while a frame is on the wire leave together in
the next frame, so a thousand concurrent callers cost the server a few frames, not a thousand
requests. Use it from asyncio code that has many commands to make::

    from consensus.aioclient import AsyncPaxosClient

    async with AsyncPaxosClient("127.0.0.1", 33333, token="...",
                                nodes=["127.0.0.1:33334"]) as client:
        await client.put("name", "Neo", group=1)
        await asyncio.gather(*(client.put(f"k{i}", "v") for i in range(1000)))
        await client.get("name")                  # 'Neo' (linearizable)
        await client.submit('{"type": "put", "key": "a", "value": "b"}', 1)  # any command

Routing and failover: the first node's hello names every node of the cluster and each group's
leader; commands of a group go straight to its leader (no forwarding hop), and every answer
refreshes that. When a node cannot be reached, the connection drops, or it answers 503, the
request goes to the next node with the *same* request id and ``retry: true`` (the node then
answers from the stored result if the command was already applied), until ``retry_timeout``
(as ``PaxosClient``: the first attempt may take its whole ``timeout``, no other one starts after
``retry_timeout`` or waits past it, and the pause after each round over every node grows from
0.1 s to 1 s). A node whose first frame is no hello (a proxy's error page) counts as down.
A node that stops answering altogether (a stopped or frozen process, a machine gone from the
network without closing its connections) is found by a websocket ping every ``keepalive``
seconds that gets no pong within ``keepalive`` seconds: its connection is dropped and its
requests go to the next node then, instead of waiting out their ``timeout``.
Errors are those of ``consensus.client`` (``BadRequest``, ``AuthError``, ``NotFound``,
``RequestIdConflict``, ``NoQuorum``, ``Unavailable``; a write's carry its ``request_id``), and
``ClientClosed`` for the calls that ``close()`` ended or that came after it. The KV helpers
(``put``, ``delete``, ``cas``) mark their commands for the KV store (``"machine": "kv"``): a group
that runs another state machine refuses them with ``NotFound`` before proposing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from .client import (
    DEFAULT_PORT,
    DEFAULT_RETRY_TIMEOUT,
    DEFAULT_TIMEOUT,
    TOKEN_ENVIRONMENT_VARIABLE,
    AuthError,
    CasResult,
    CommandResult,
    NoQuorum,
    NotFound,
    PaxosError,
    Unavailable,
    error_for_status,
    new_request_id,
    node_addresses,
    parse_address,
    retry_pause,
)

logger = logging.getLogger("consensus.client")

STREAM_PATH = "/ws/client/"
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
"""A node's frame limit when its hello does not say (releases before it did)."""
Address = tuple[str, int]


DEFAULT_KEEPALIVE = 2.0
"""Seconds between pings on a node's connection, and to wait for each pong: a node that is
alive answers a ping from its event loop within milliseconds, even under load."""
_TIMER_SLACK = 0.001
"""Seconds early a request may time out, so a timer that fires a little early ends it."""


class ClientClosed(PaxosError):
    """The client was closed (``close()``, or the end of its ``async with``) before the call
    ended, or the call was made after that. A write that was in flight then has an unknown
    outcome: retry it with its ``request_id`` on another client."""


class _LinkLost(Exception):
    """The connection dropped with the request unanswered: its outcome is unknown."""


class _OutOfTime(PaxosError):
    """``retry_timeout`` ran out before the next attempt could start (never leaves ``_call``)."""


class _Link:
    """One websocket to one node: requests out in batches, answers matched by id, and a request
    unanswered after its timeout failed with ``TimeoutError``.

    Timeouts: every request of a link waits as long as the others (the client's ``timeout``),
    so their deadlines come in the order of the requests. One timer for the oldest unanswered
    request then serves them all, where ``asyncio.timeout`` per call cost a timer handle, a
    heap push and a cancellation per command: about a seventh of the client's CPU under load
    (py-spy, 128 concurrent callers). ``paxosbench --path client --clients 128`` against one
    cluster: the client's CPU per put went from 60 to 55 µs (medians of 3 interleaved runs)."""

    def __init__(
        self,
        address: Address,
        websocket: ClientConnection,
        hello: dict[str, Any],
        timeout: float,
    ):
        self.address = address
        self.hello = hello
        self.timeout = timeout
        self._websocket = websocket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        """(deadline, id) of requests in the order they were made: deadlines only grow."""
        self._timer: asyncio.TimerHandle | None = None
        self._outbox: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        # At least 1: a hello that said 0 would leave the writer spinning on a full outbox.
        self._max_batch = max(1, int(hello.get("max_requests_per_frame", 1000)))
        self._max_frame_bytes = int(hello.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES))
        self._names_machines = "machine" in (hello.get("submit_fields") or ())
        """Whether the node takes a submit's ``machine``: an older one refuses it with 400, and
        gets the KV helpers' commands without it (``request``)."""
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._read())]
        self.closed = False

    @classmethod
    async def open(
        cls, address: Address, token: str, timeout: float, keepalive: float | None
    ) -> _Link:
        host, port = address
        async with asyncio.timeout(timeout):  # the connection and the hello: one attempt
            websocket = await websockets.connect(
                f"ws://{host}:{port}{STREAM_PATH}",
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=timeout,
                max_size=None,
                compression=None,
                ping_interval=keepalive,
                ping_timeout=keepalive,
                # A frozen node does not answer the close either: without this the link would
                # wait 10 s for its close frame before its requests could go elsewhere.
                close_timeout=keepalive if keepalive is not None else 10.0,
            )
            try:
                frame = await websocket.recv()
            except asyncio.CancelledError:  # the client was closed, or the attempt timed out
                websocket.transport.abort()
                raise
            except BaseException:
                await websocket.close()
                raise
        try:
            first = orjson.loads(frame)
        except orjson.JSONDecodeError:
            first = None
        if isinstance(first, dict) and isinstance(first.get("hello"), dict):
            try:
                return cls(address, websocket, first["hello"], timeout)
            except (TypeError, ValueError):  # limits that are no numbers: fall through
                pass
        await websocket.close()
        status = first.get("status") if isinstance(first, dict) else None
        if isinstance(first, dict) and "error" in first and status in (401, 403):
            raise error_for_status(status, first)  # refused: {"error": ..., "status": 401}
        if isinstance(first, dict) and "error" in first:  # 503: the node is starting, stopping
            raise Unavailable(str(first["error"]), status=503, body=first)
        # A proxy's page, another service: no Paxos node there (now); try the next one.
        raise Unavailable(f"not a Paxos node's stream: its first frame is {str(frame)[:100]!r}")

    def request(self, payload: dict[str, Any]) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Queue ``payload`` for the next frame: its id here, and the future of its answer
        (``TimeoutError`` if none came within ``timeout`` seconds)."""
        if self.closed:
            raise _LinkLost("the connection is closed")
        request_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[request_id] = future
        if "machine" in payload and not self._names_machines:
            payload = {key: value for key, value in payload.items() if key != "machine"}
        self._outbox.append({**payload, "id": request_id})
        self._wake.set()
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self._waiting:
            deadlines.popleft()  # answered: keeps the queue as short as what is in flight
        deadlines.append((loop.time() + self.timeout, request_id))
        if self._timer is None:
            self._timer = loop.call_at(deadlines[0][0], self._expire)
        return request_id, future

    def _expire(self) -> None:
        """Fail the requests whose deadline passed; wait again for the oldest one left."""
        loop = asyncio.get_running_loop()
        now = loop.time() + _TIMER_SLACK  # a timer may fire a hair before its time
        deadlines = self._deadlines
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1] not in self._waiting):
            _deadline, request_id = deadlines.popleft()
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(TimeoutError())
        self._timer = loop.call_at(deadlines[0][0], self._expire) if deadlines else None

    def abandon(self, request_id: int) -> None:
        """Stop waiting for an answer (the caller timed out)."""
        self._waiting.pop(request_id, None)

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    frame = self._next_frame()
                    if frame:
                        await self._websocket.send(frame.decode())  # a text frame: JSON
        except Exception as error:  # noqa: BLE001 - any failure ends the link the same way
            self._lost(error)

    def _next_frame(self) -> bytes | None:
        """Take the next frame's requests off the outbox: at most ``max_requests_per_frame``
        of them and ``max_frame_bytes`` of JSON, the node's limits (a frame above its byte
        limit made it drop the connection: 18 concurrent commands of 1 MB failed after their
        whole timeout). A request too large for any frame fails at once (413)."""
        parts: list[bytes] = []
        size = 2  # the brackets
        taken = 0
        for request in itertools.islice(self._outbox, self._max_batch):
            encoded = orjson.dumps(request)
            if size + len(encoded) + 1 > self._max_frame_bytes:
                if parts:
                    break
                taken += 1
                self._refuse(request["id"], len(encoded))
                continue
            parts.append(encoded)
            size += len(encoded) + 1
            taken += 1
        del self._outbox[:taken]
        return b"[%b]" % b",".join(parts) if parts else None

    def _refuse(self, request_id: int, size: int) -> None:
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(
                error_for_status(
                    413,
                    {
                        "error": f"a request of {size} bytes does not fit in the node's "
                        f"frames of {self._max_frame_bytes} bytes"
                    },
                )
            )

    async def _read(self) -> None:
        try:
            async for frame in self._websocket:
                answers = orjson.loads(frame)
                for answer in answers if isinstance(answers, list) else [answers]:
                    future = self._waiting.pop(answer.get("id"), None)  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        future.set_result(answer)
                    elif answer.get("id") is None:
                        logger.warning("node %s:%s: %s", *self.address, answer.get("error"))
            self._lost(None)
        except Exception as error:  # noqa: BLE001
            self._lost(error)

    def _lost(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        reason = _LinkLost(f"connection to {self.address[0]}:{self.address[1]} lost: {error}")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(reason)
        self._waiting.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def close(self) -> None:
        self._lost(None)
        with contextlib.suppress(Exception):
            await self._websocket.close()


_CONNECT_ERRORS = (OSError, TimeoutError, PaxosError, websockets.WebSocketException)
"""Failures to open a link that move on to the next node (``AuthError`` does not: it is final)."""


class AsyncPaxosClient:
    """A pipelining asyncio client for one cluster (see the module docstring).

    ``timeout`` bounds one attempt on one node (seconds); ``retry_timeout`` a whole call with its
    failovers; ``keepalive`` how soon a node that stopped answering altogether is given up on.
    ``token`` defaults to ``$PAXOS_API_TOKEN``. Use one object from one event loop,
    shared by any number of coroutines.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        *,
        nodes: Iterable[str | tuple[str, int]] = (),
        timeout: float = DEFAULT_TIMEOUT,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        keepalive: float | None = DEFAULT_KEEPALIVE,
    ) -> None:
        self.token = token if token is not None else os.environ.get(TOKEN_ENVIRONMENT_VARIABLE, "")
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.keepalive = keepalive
        """Seconds between pings, and to wait for each pong (None: no pings; see above)."""
        self._addresses: list[Address] = node_addresses(host, port, nodes)
        self._links: dict[Address, _Link] = {}
        self._connecting: dict[Address, asyncio.Task[_Link]] = {}
        self._node_addresses: dict[int, Address] = {}
        self._leaders: dict[int, int] = {}
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        """Done when ``close()`` was called: wakes the calls waiting to retry."""

    async def __aenter__(self) -> AsyncPaxosClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close every connection: the calls still waiting for an answer, and any call made
        later, fail with ``ClientClosed``; connections being opened are given up."""
        self._closed = True
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        connecting = list(self._connecting.values())
        for task in connecting:
            task.cancel()
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
        # An attempt that opened its link anyway closes it (``_open``): wait for them.
        await asyncio.gather(*connecting, return_exceptions=True)

    # ------------------------------------------------------------------ commands

    async def submit(self, msg: Any, group: int = 1, request_id: str | None = None) -> Any:
        """Commit ``msg`` (a string; a dict or list is JSON-encoded) and return its result."""
        return (await self.submit_command(msg, group, request_id)).result

    async def submit_command(
        self, msg: Any, group: int = 1, request_id: str | None = None
    ) -> CommandResult:
        """Like ``submit``, with the instance, request id and duplicate flag."""
        command = msg if isinstance(msg, str) else orjson.dumps(msg).decode()
        payload = {
            "op": "submit",
            "group": int(group),
            "command": command,
            "request_id": request_id or new_request_id(),
        }
        return await self._submit(payload)

    async def _submit(self, payload: dict[str, Any]) -> CommandResult:
        answer = await self._call(payload["group"], payload)
        return CommandResult(
            answer["instance"], answer["request_id"], answer["result"], answer["duplicate"]
        )

    async def query(self, query: Any, group: int = 1, consistency: str = "linearizable") -> Any:
        """Ask the group's state machine a read-only ``query`` (its ``query`` method)."""
        if consistency not in {"linearizable", "local"}:
            raise ValueError("consistency must be 'linearizable' or 'local'")
        text = query if isinstance(query, str) else orjson.dumps(query).decode()
        payload = {"op": "query", "group": int(group), "query": text, "consistency": consistency}
        return (await self._call(int(group), payload))["result"]

    # ------------------------------------------------------------------ the KV store

    async def get(
        self, key: str, group: int = 1, *, consistency: str = "linearizable", default: Any = None
    ) -> Any:
        """The key's value, or ``default`` when it does not exist."""
        result = await self.query({"op": "get", "key": key}, group, consistency)
        return _field(result, "value", group) if _field(result, "found", group) else default

    async def put(
        self, key: str, value: str, group: int = 1, *, request_id: str | None = None
    ) -> int:
        """Set ``key`` to ``value``; returns the instance the write was chosen in."""
        command = {"op": "put", "key": key, "value": value}
        return (await self._kv_write(command, group, request_id)).instance

    async def delete(self, key: str, group: int = 1, *, request_id: str | None = None) -> bool:
        """Delete ``key``; False when it did not exist."""
        done = await self._kv_write({"op": "delete", "key": key}, group, request_id)
        return bool(_field(done.result, "deleted", group, done))

    async def cas(
        self,
        key: str,
        expected: str | None,
        value: str,
        group: int = 1,
        *,
        request_id: str | None = None,
    ) -> CasResult:
        """Set ``key`` to ``value`` only if it is ``expected`` now (None: only if absent)."""
        command = {"op": "cas", "key": key, "expected": expected, "value": value}
        done = await self._kv_write(command, group, request_id)
        succeeded = _field(done.result, "succeeded", group, done)
        return CasResult(bool(succeeded), _field(done.result, "value", group, done), done.instance)

    async def _kv_write(
        self, command: dict[str, Any], group: int, request_id: str | None
    ) -> CommandResult:
        """Submit a KV store command, marked for the KV store: a node refuses it with 404
        (``NotFound``) when the group runs another state machine, before proposing it."""
        payload = {
            "op": "submit",
            "group": int(group),
            "command": orjson.dumps(command).decode(),
            "request_id": request_id or new_request_id(),
            "machine": "kv",
        }
        done = await self._submit(payload)
        if isinstance(done.result, dict) and "error" in done.result:
            error = error_for_status(400, done.result)
            error.request_id = done.request_id
            raise error
        return done

    # ------------------------------------------------------------------ plumbing

    async def _call(self, group: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``payload`` to the group's leader first, then the other nodes in turn; an error
        of a submit carries its ``request_id``."""
        try:
            return await self._attempts(group, payload)
        except PaxosError as error:
            error.request_id = payload.get("request_id")
            raise

    async def _attempts(self, group: int, payload: dict[str, Any]) -> dict[str, Any]:
        """The attempts of ``_call``, as ``PaxosClient``'s: the first one waits up to
        ``timeout``; no other one starts after ``retry_timeout``, and each waits at most the time
        left; after a round over every node the pause grows (``retry_pause``)."""
        if self._closed:
            raise ClientClosed("the client is closed")
        deadline = time.monotonic() + self.retry_timeout
        last: PaxosError | None = None  # built only on a failure: this runs once per command
        rounds = 0
        while True:
            retry_after = 0.0
            for address in self._candidates(group):
                link = self._links.get(address)
                try:
                    if link is None or link.closed:
                        link = await self._connect(address, self._time_left(deadline, last))
                    limit = self._time_left(deadline, last)  # after the connect, if any
                    request_id, future = link.request(payload)
                except AuthError:
                    raise
                except (_LinkLost, *_CONNECT_ERRORS) as error:  # not sent: try the next node
                    if self._closed:
                        raise ClientClosed("the client is closed") from None
                    if isinstance(error, _OutOfTime):
                        assert last is not None
                        raise last from None
                    last = Unavailable(f"{address[0]}:{address[1]}: {str(error) or 'timed out'}")
                    continue
                try:
                    # The link fails it after ``timeout`` seconds; a retry's deadline may come
                    # first (the one case that pays for a timer of its own).
                    answer = await (future if limit is None else asyncio.wait_for(future, limit))
                except (_LinkLost, TimeoutError) as error:
                    link.abandon(request_id)
                    if self._closed:
                        raise ClientClosed("the client is closed: the outcome is unknown") from None
                    last = Unavailable(f"{address[0]}:{address[1]}: {str(error) or 'timed out'}")
                    payload = {**payload, "retry": True}  # the outcome is unknown
                    continue
                self._note_leader(group, answer.get("leader"))
                if answer.get("ok"):
                    return answer
                if answer.get("status") != 503:
                    raise error_for_status(int(answer.get("status", 500)), answer)
                last = NoQuorum(str(answer.get("error")), status=503, body=answer)
                with contextlib.suppress(TypeError, ValueError):
                    retry_after = max(retry_after, float(answer.get("retry_after", 0.0)))
                payload = {**payload, "retry": True}
            rounds += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise last or Unavailable("no node could be reached")
            await self._pause(retry_pause(rounds, retry_after, remaining))

    def _time_left(self, deadline: float, last: PaxosError | None) -> float | None:
        """How long the next wait of an attempt may take: None (``timeout``) for the call's first
        attempt, else at most what is left of ``retry_timeout``; ``_OutOfTime`` if nothing is."""
        if last is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _OutOfTime("retry_timeout ran out")
        return remaining if remaining < self.timeout else None

    async def _pause(self, seconds: float) -> None:
        """Sleep before the next round of attempts; ``ClientClosed`` when closed meanwhile."""
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        await asyncio.wait([self._closing], timeout=seconds)  # no task: 1,000 calls may wait
        if self._closed:
            raise ClientClosed("the client is closed")

    def _candidates(self, group: int) -> list[Address]:
        leader = self._node_addresses.get(self._leaders.get(group, 0))
        others = [address for address in self._addresses if address != leader]
        return [leader, *others] if leader is not None else others

    def _note_leader(self, group: int, leader: Any) -> None:
        if isinstance(leader, int):
            self._leaders[group] = leader

    async def _connect(self, address: Address, limit: float | None = None) -> _Link:
        """Open a link to ``address`` (callers that need one at the same time share the attempt,
        which takes at most ``timeout``; this caller waits at most ``limit`` for it) and learn
        the cluster from its hello. ``_call`` reuses an open link without coming here."""
        if self._closed:
            raise ClientClosed("the client is closed")
        task = self._connecting.get(address)
        if task is None:
            task = asyncio.create_task(self._open(address))
            self._connecting[address] = task
            task.add_done_callback(self._opened)
        # Not ``shield``: an attempt cancelled by ``close()`` must not look like this caller's
        # cancellation, and one that outlives ``limit`` goes on for the other callers.
        await asyncio.wait([task], timeout=limit)
        if not task.done():
            raise TimeoutError()
        if task.cancelled():
            raise ClientClosed("the client is closed")
        return task.result()

    def _opened(self, task: asyncio.Task[_Link]) -> None:
        """An attempt ended: the next caller starts another. Its error is taken here too: the
        callers that waited for it may all have stopped waiting, and asyncio would log it."""
        for address, connecting in list(self._connecting.items()):
            if connecting is task:
                del self._connecting[address]
        if not task.cancelled():
            task.exception()

    async def _open(self, address: Address) -> _Link:
        """One attempt to open a link: kept and learnt from here, not by the callers waiting
        for it (a caller may have stopped waiting), or closed at once if the client is."""
        link = await _Link.open(address, self.token, self.timeout, self.keepalive)
        if self._closed:
            await link.close()
            raise ClientClosed("the client is closed")
        try:
            self._learn(link.hello)
        except (AttributeError, TypeError, ValueError) as error:
            await link.close()
            raise Unavailable(f"a hello this client cannot read ({error}): {link.hello}") from None
        self._links[address] = link
        return link

    def _learn(self, hello: dict[str, Any]) -> None:
        """The hello's node list and leaders: route to leaders, fail over to every node."""
        for node_id, text in hello.get("nodes", {}).items():
            address = parse_address(text)
            self._node_addresses[int(node_id)] = address
            if address not in self._addresses:
                self._addresses.append(address)
        for group, leader in hello.get("leaders", {}).items():
            self._note_leader(int(group), leader)


def _field(result: Any, name: str, group: int, done: CommandResult | None = None) -> Any:
    """A field of the KV store's answer (``done``: the command's), or ``NotFound`` when the
    answer is not the KV store's: the group runs another state machine, and the node did not
    refuse the command before proposing it (a release without the stream's ``machine`` field).
    Such a command was applied, by the other machine: the error says in which instance."""
    if isinstance(result, dict) and name in result:
        return result[name]
    where = f" (the command was applied there, in instance {done.instance})" if done else ""
    error = NotFound(
        f"group {group} does not run the KV store{where}: its answer has no {name!r}: "
        f"{str(result)[:200]}",
        body=result,
    )
    error.request_id = done.request_id if done else None
    raise error


__all__ = ["AsyncPaxosClient", "ClientClosed"]
