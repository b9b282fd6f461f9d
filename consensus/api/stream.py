"""The pipelined client stream (``/ws/client/``): many requests in flight on one websocket.

Why it exists: a REST request costs an HTTP parse and a Django request on top of the command
itself, about a millisecond of CPU per command on a 2-core test machine, which caps
a node at a few hundred commands per second per core whatever the consensus layer can do. A
client that keeps many requests in flight instead sends them as JSON arrays in websocket frames;
the node hands all of them to the replica at once (so the leader batches them into a few Paxos
instances) and answers with arrays of results as they complete, in any order, matched by ``id``.
This is etcd's gRPC stream in spirit; ``consensus.aioclient.AsyncPaxosClient`` speaks it.

The semantics are the REST API's: bearer-token auth in the handshake, exactly-once request ids,
linearizable reads through the read barrier, the same error statuses.

Frames are JSON text. Client to node, a list of requests (one object alone is accepted too)::

    {"id": 1, "op": "submit", "group": 1, "command": "...", "request_id": "...", "retry": false,
     "machine": "kv"}
    {"id": 2, "op": "query", "group": 1, "query": "...", "consistency": "linearizable"}

Node to client, a list of responses; the first frame after connecting is ``{"hello": {...}}``
(this node's id, the cluster's nodes and each group's leader, for routing)::

    {"id": 1, "ok": true, "instance": 7, "result": ..., "request_id": "...", "duplicate": false,
     "leader": 1}
    {"id": 2, "ok": true, "result": ...}
    {"id": 3, "ok": false, "status": 503, "error": "...", "retry_after": 0.5, "leader": 2}

``retry: true`` marks a resend after an unknown outcome: the node then answers from the stored
result if the request id was already applied (REST does this for every request id it is given;
here it costs a database look-up, so only retries pay it). A resend while the first request is
still waiting on this connection joins it, and each gets the answer (the same command under the
same id; another command is a 409). ``"machine": "kv"`` on a submit names the state machine the
command is meant for: a group that runs another one refuses it with 404 before it is proposed
(the Python client's KV helpers send it). Queries go to the group's state
machine ``query`` method (the KV store answers ``{"op": "get", "key": ...}``): all the queries of
one loop turn for one group share one read barrier and one trip to a worker thread
(``consensus.api.reads``).

The KV store's commands and queries (``{"op": "put", "key": ..., "value": ...}``) meet the limits
of its REST routes, with the same statuses and words: a key is non-empty, without '/', at most
``PAXOS_MAX_KEY_BYTES``; a value (and a cas's ``expected``) at most ``PAXOS_MAX_VALUE_BYTES``
(413). A KV get sent to a group that runs another state machine gets the REST routes' 404.

A request's ``id`` is a string or an integer of at most 64 bits (signed or unsigned), echoed
as sent. JSON parsers (orjson's included) read a larger integer as a float, which would come
back rounded and match nothing, so a float id is refused like a missing one, as are ``true``,
``false``, lists and objects.

Bad input never closes the stream: a frame that is not JSON, or a request without a usable
``id``, gets a response with ``"id": null`` and status 400. A missing or wrong token gets an
error frame (``{"error": ..., "status": 401}``), then the stream is closed with code 4001 and
the same words as the close reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from consensus.registry import NotRegistered, registry
from consensus.request_ids import new_request_id
from consensus.runtime import (
    Outcome,
    OverloadedError,
    PaxosNode,
    SubmitError,
    UnknownGroupError,
    get_node,
)
from consensus.runtime.waiters import reused, same_command
from consensus.statemachine import QueryError
from consensus.transport import ws_limits

from .authentication import bearer_token, token_is_valid
from .exceptions import ApiError
from .fastpath import (
    check_for_machine,
    check_request_id,
    machine_refusal,
    query_error,
    reject_unknown_fields,
    require_string,
    runtime_error,
)
from .reads import reads_of

logger = logging.getLogger("consensus.api")

CLIENT_STREAM_PATH = "ws/client/"
MAX_REQUESTS_PER_FRAME = 1_000
MAX_IN_FLIGHT = 2_048
"""Per connection: requests read and not yet answered plus answers not yet sent. At this many
the stream stops reading the client's frames until some are answered, so the socket pushes
back instead of the node's memory growing."""
MAX_UNSENT_BYTES = 4 * 1024 * 1024
"""Answers the client has not read yet (encoded, and in the server's write buffer): above it
the stream sends no more and reads no more from that client. ASGI's ``send`` never blocks: a
client that asked for large values and did not read made a node hold gigabytes for it, and
encode them in one frame on its loop (a 15 s stall)."""
MAX_QUERIES_RUNNING = 256
QUERY_BATCH = 128
"""Queries start in batches of at most ``QUERY_BATCH`` while fewer than ``MAX_QUERIES_RUNNING``
run: a query's answer may be much larger than the query (a KV value), so their results are
bounded by count before they are answered (about 100 MB with the largest KV values)."""
FRAME_BYTES = 1024 * 1024
"""Answers go out in frames of about this size at most (one answer may be larger)."""
BACKLOG_POLL = 0.005
"""How often a stream waiting for its client to read checks again (seconds)."""
SUBMIT_FIELDS = frozenset({"id", "op", "group", "command", "request_id", "retry", "machine"})
QUERY_FIELDS = frozenset({"id", "op", "group", "query", "consistency", "retry"})
"""What a request may hold: a typo (``"comand"``) fails as on the REST API, not ignored.
(A query's ``retry``, which the Python client sets on every resend, changes nothing.)"""
SWEEP_INTERVAL = 0.25
"""How often pending commands are checked against the node's request timeout (seconds)."""
ID_RULE = "ids are strings or integers of at most 64 bits"
ID_FLOAT_HINT = "a larger integer arrives as a float"
"""What a request's ``id`` may be (``_client_id``), in the words of its 400."""
CLOSE_UNAUTHORIZED = 4001
CLOSE_UNAVAILABLE = 4005


@dataclass(slots=True)
class _Pending:
    """A command of this connection waiting for its result."""

    client_ids: list[Any]
    """Every request that asked for it: a resend while the first still waits joins it (a
    client that gave up on this node, found no other, and came back)."""
    started: float
    command: str
    owned: bool
    """Whether the stream owns the node's waiter (``submit_nowait``; it forgets it when it
    stops waiting) or ``PaxosNode.submit`` does (a retry, timed out by ``submit`` itself)."""


Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
Receive = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


async def client_stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI application of ``/ws/client/`` (one ``ClientStream`` per connection)."""
    await ClientStream(scope, send).run(receive)


class ClientStream:
    """One client connection: parse frames, start their requests, send answers in batches."""

    def __init__(self, scope: dict[str, Any], send: Send) -> None:
        self.scope = scope
        self._send = send
        self._node: PaxosNode | None = None
        self._pending: dict[tuple[int, str], _Pending] = {}
        """(group, request id) -> the command waiting for its result."""
        self._outbox: list[str] = []
        """Encoded answers not yet sent."""
        self._outbox_bytes = 0
        self._queries_running = 0
        self._output = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ connection

    async def run(self, receive: Receive) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await self._send({"type": "websocket.accept"})
        refusal = self._refusal()
        if refusal is not None:
            code, status, text = refusal
            await self._send_frame({"error": text, "status": status})
            # the words in the close frame too: a client that only sees the close (a browser's
            # CloseEvent.reason, a websockets ConnectionClosed) learns why
            await self._send({"type": "websocket.close", "code": code, "reason": text})
            return
        ws_limits.allow_full_frames(self.scope)  # the token is good: full frames from here
        node = self._node
        assert node is not None
        await self._send_frame({"hello": _hello(node)})
        sender = asyncio.create_task(self._sender(), name="client-stream-send")
        sweeper = asyncio.create_task(self._sweeper(), name="client-stream-sweep")
        try:
            while True:
                message = await self._receive_when_ready(receive)
                kind = message["type"]
                if kind == "websocket.disconnect":
                    break
                if kind == "websocket.receive":
                    await self._on_frame(message.get("text") or message.get("bytes") or b"")
        finally:
            self._closed = True
            for task in (sender, sweeper, *self._tasks):
                task.cancel()
            for (group_id, request_id), pending in self._pending.items():
                if pending.owned:
                    node.forget(group_id, request_id)
            self._pending.clear()

    def _refusal(self) -> tuple[int, int, str] | None:
        """(close code, the REST API's status for it, message), or None to accept."""
        headers = dict(self.scope.get("headers", ()))
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if token is None or not token_is_valid(token):
            text = "missing or invalid API token (Authorization: Bearer ...)"
            return CLOSE_UNAUTHORIZED, 401, text
        self._node = get_node()
        if self._node is None:
            return CLOSE_UNAVAILABLE, 503, "this server runs no Paxos node"
        return None

    async def _receive_when_ready(self, receive: Receive) -> dict[str, Any]:
        """The client's next message once its backlog allows (``_backlogged``): a client that
        sends without reading finds its frames unread, at most one ahead. A disconnect is seen
        at once: waiting for a backlog that only the gone client could drain would never end."""
        if not self._backlogged():
            return await receive()
        incoming = asyncio.ensure_future(receive())
        try:
            while self._backlogged():
                if not incoming.done():
                    await asyncio.wait({incoming}, timeout=BACKLOG_POLL)
                elif incoming.result()["type"] == "websocket.disconnect":
                    break
                else:
                    await self._while_backlogged()
            return await incoming
        finally:
            incoming.cancel()

    async def _while_backlogged(self) -> None:
        """Wait while the client has too much unanswered or unread."""
        while self._backlogged():
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), BACKLOG_POLL)

    def _backlogged(self) -> bool:
        if self._closed:
            return False
        if self._queries_running >= MAX_QUERIES_RUNNING:
            return True
        unanswered = len(self._pending) + self._queries_running + len(self._outbox)
        if unanswered >= MAX_IN_FLIGHT:
            return True
        return self._outbox_bytes + ws_limits.unsent_bytes(self.scope) > MAX_UNSENT_BYTES

    async def _send_frame(self, payload: dict[str, Any]) -> None:
        await self._send({"type": "websocket.send", "text": _encoded(payload)})

    async def _sender(self) -> None:
        """What was answered since the last frame goes out together, in frames of at most
        ``FRAME_BYTES``, while the client reads."""
        try:
            while True:
                await self._output.wait()
                self._output.clear()
                await self._flush()
                self._drained.set()
        except Exception:  # noqa: BLE001 - the connection is gone (uvicorn's send raises then)
            self._closed = True
            self._outbox.clear()
            self._outbox_bytes = 0
            self._drained.set()

    async def _flush(self) -> None:
        while self._outbox:
            if ws_limits.unsent_bytes(self.scope) > MAX_UNSENT_BYTES:
                await asyncio.sleep(BACKLOG_POLL)  # the client is not reading
                continue
            size = count = 0
            for answer in self._outbox:
                if count and size + len(answer) > FRAME_BYTES:
                    break
                size += len(answer)
                count += 1
            frame = self._outbox[:count]
            del self._outbox[:count]
            self._outbox_bytes -= size
            await self._send({"type": "websocket.send", "text": "[" + ",".join(frame) + "]"})

    def _answer(self, response: dict[str, Any]) -> None:
        if not self._closed:
            encoded = _encoded(response)
            self._outbox.append(encoded)
            self._outbox_bytes += len(encoded)
            self._output.set()

    def _fail(self, request_id: Any, error: ApiError, **extra: Any) -> None:
        """The REST API's error, as an answer (the same statuses and messages)."""
        response: dict[str, Any] = {
            "id": request_id,
            "ok": False,
            "status": error.status_code,
            "error": error.message,
            **error.extra,
            **extra,
        }
        if error.retry_after is not None:
            response["retry_after"] = error.retry_after
        self._answer(response)

    def _refused(self, client_id: Any, group_id: int, error: Exception) -> None:
        """A command the runtime refused or timed out, with the leader as this node sees it
        (the client sends its retry there)."""
        node = self._node
        assert node is not None
        self._fail(client_id, runtime_error(node, group_id, error), **_leader(node, group_id))

    # ------------------------------------------------------------------ requests

    async def _on_frame(self, data: str | bytes) -> None:
        try:
            requests = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            self._fail(None, ApiError(400, f"a frame must be JSON: {error}"))
            return
        if isinstance(requests, dict):
            requests = [requests]
        if not isinstance(requests, list):
            self._fail(None, ApiError(400, "a frame is a JSON list of request objects"))
            return
        if len(requests) > MAX_REQUESTS_PER_FRAME:
            message = f"at most {MAX_REQUESTS_PER_FRAME} requests per frame"
            self._fail(None, ApiError(400, message))
            return
        queries: dict[tuple[int, bool], list[tuple[Any, str]]] = {}
        for request in requests:
            client_id: str | int | None = None  # answered as null until it proves usable
            try:
                client_id = _client_id(request)
                op = request.get("op")
                group_id = _group_of(request)
                if op == "submit":
                    reject_unknown_fields(request, SUBMIT_FIELDS)
                    self._submit(client_id, group_id, request)
                elif op == "query":
                    reject_unknown_fields(request, QUERY_FIELDS)
                    query = require_string(request, "query")
                    self._check(group_id, query)
                    consistency = request.get("consistency", "linearizable")
                    if consistency not in ("linearizable", "local"):
                        raise ApiError(400, "consistency must be 'linearizable' or 'local'")
                    key = (group_id, consistency == "linearizable")
                    queries.setdefault(key, []).append((client_id, query))
                else:
                    raise ApiError(400, f"unknown op {op!r}: use 'submit' or 'query'")
            except ApiError as error:
                self._fail(client_id, error)
        for (group_id, linearizable), items in queries.items():
            for start in range(0, len(items), QUERY_BATCH):
                await self._while_backlogged()
                batch = items[start : start + QUERY_BATCH]
                self._queries_running += len(batch)
                self._spawn(self._queries(group_id, linearizable, batch))

    def _submit(self, client_id: Any, group_id: int, request: dict[str, Any]) -> None:
        node = self._node
        assert node is not None
        command = require_string(request, "command")
        self._check_machine(group_id, request.get("machine"))
        self._check(group_id, command)
        request_id = check_request_id(request.get("request_id")) or new_request_id()
        retry = request.get("retry", False)
        if not isinstance(retry, bool):
            raise ApiError(400, "retry must be true or false")
        key = (group_id, request_id)
        pending = self._pending.get(key)
        if pending is not None:  # sent again while the first is still waiting: one answer each
            if not same_command(pending.command, command):
                raise runtime_error(node, group_id, reused(group_id, request_id))
            pending.client_ids.append(client_id)
            return
        if retry:
            self._pending[key] = _Pending([client_id], float("inf"), command, owned=False)
            self._spawn(self._retry(group_id, command, request_id))
            return
        try:
            future = node.submit_nowait(group_id, command, request_id)
        except (UnknownGroupError, SubmitError) as error:
            raise runtime_error(node, group_id, error) from None
        self._pending[key] = _Pending([client_id], time.monotonic(), command, owned=True)
        future.add_done_callback(lambda done: self._committed(group_id, request_id, done))

    def _check_machine(self, group_id: int, name: Any) -> None:
        """A submit's optional ``machine``: the state machine the client meant the command for
        (the client's KV helpers say "kv"). A group whose machine is not one (an instance of the
        class registered under that name: a subclass of the KV store is one, as the REST KV
        routes take it) refuses it with the REST routes' 404 before anything is proposed: a KV
        put to a group that runs a log was committed there, and its result was not the one the
        client expected."""
        if name is None:
            return
        if not isinstance(name, str):
            raise ApiError(400, "machine must be a state machine's name (a string)")
        try:
            registry.get(name)
        except NotRegistered as error:
            raise ApiError(400, f"machine: {error}") from None
        node = self._node
        assert node is not None
        # a group without a machine (unknown here) is the submit's to refuse
        if node.machines.get(group_id) is not None and (
            refusal := machine_refusal(node, group_id, name)
        ):
            raise refusal

    def _check(self, group_id: int, text: str) -> None:
        node = self._node
        assert node is not None
        check_for_machine(node, group_id, text)

    def _committed(self, group_id: int, request_id: str, future: asyncio.Future[Outcome]) -> None:
        pending = self._pending.pop((group_id, request_id), None)
        if pending is None:  # timed out or disconnected meanwhile
            return
        node = self._node
        assert node is not None
        elapsed = time.monotonic() - pending.started
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            outcome = future.result()
            node.observer.request_finished(
                group_id, elapsed, "duplicate" if outcome.duplicate else "ok"
            )
            self._answer_all(pending, outcome)
        else:
            kind = "overloaded" if isinstance(error, OverloadedError) else "error"
            node.observer.request_finished(group_id, elapsed, kind)
            self._refuse_all(pending, group_id, error)

    def _answer_all(self, pending: _Pending, outcome: Outcome) -> None:
        node = self._node
        assert node is not None
        for client_id in pending.client_ids:
            self._answer(_outcome(node, client_id, outcome))

    def _refuse_all(self, pending: _Pending, group_id: int, error: Exception) -> None:
        for client_id in pending.client_ids:
            self._refused(client_id, group_id, error)

    async def _retry(self, group_id: int, command: str, request_id: str) -> None:
        """A resend: ``PaxosNode.submit`` answers from the stored result if there is one."""
        node = self._node
        assert node is not None
        key = (group_id, request_id)
        try:
            outcome = await node.submit(group_id, command, request_id)
        except (UnknownGroupError, SubmitError) as error:
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._refuse_all(pending, group_id, error)
        except BaseException:
            self._pending.pop(key, None)
            raise
        else:
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._answer_all(pending, outcome)

    async def _queries(
        self, group_id: int, linearizable: bool, items: list[tuple[Any, str]]
    ) -> None:
        node = self._node
        assert node is not None
        reads = reads_of(node)
        try:
            results = await asyncio.gather(
                *(reads.query(group_id, query, linearizable=linearizable) for _, query in items),
                return_exceptions=True,
            )
        finally:
            self._queries_running -= len(items)
        for (client_id, query), result in zip(items, results, strict=True):
            if isinstance(result, UnknownGroupError | SubmitError):
                self._fail(client_id, runtime_error(node, group_id, result))
            elif isinstance(result, QueryError):
                self._fail(client_id, query_error(node, group_id, query, result))
            elif isinstance(result, BaseException):
                # A bug in the machine's query, or its database failed: the REST API's 500, for
                # this query alone (raising here answered none of the batch's queries).
                logger.error(
                    "client stream: group %s query %.200r failed",
                    group_id,
                    query,
                    exc_info=(type(result), result, result.__traceback__),
                )
                self._fail(client_id, ApiError(500, "internal error (see the node's log)"))
            else:
                self._answer({"id": client_id, "ok": True, "result": result})

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweeper(self) -> None:
        """Answer 503 for commands the node did not commit within its request timeout."""
        node = self._node
        assert node is not None
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            horizon = time.monotonic() - node.request_timeout
            expired = [key for key, pending in self._pending.items() if pending.started < horizon]
            for group_id, request_id in expired:
                pending = self._pending.pop((group_id, request_id))
                node.forget(group_id, request_id)
                node.observer.request_finished(group_id, node.request_timeout, "timeout")
                error = node.commit_timeout_error(group_id, request_id, node.request_timeout)
                self._refuse_all(pending, group_id, error)


def _client_id(request: Any) -> str | int:
    """The request's ``id`` (a string or an integer), or ``ApiError`` 400.

    Only what comes back exactly as sent can match an answer to its request: orjson reads an
    integer beyond 64 bits as a float (``1.2345678901234568e+29``), so a float id is refused
    rather than echoed rounded, and so are booleans, lists and objects."""
    client_id = request.get("id") if isinstance(request, dict) else None
    if isinstance(client_id, str | int) and not isinstance(client_id, bool):
        return client_id
    if isinstance(client_id, float):
        raise ApiError(400, f"'id' is a float ({client_id!r}): {ID_RULE}; {ID_FLOAT_HINT}")
    raise ApiError(400, f"every request needs an 'id': {ID_RULE}")


def _group_of(request: dict[str, Any]) -> int:
    group_id = request.get("group", 1)
    if not isinstance(group_id, int) or isinstance(group_id, bool) or group_id < 1:
        raise ApiError(400, "group must be a positive integer")
    return group_id


def _encoded(answer: Any) -> str:
    try:
        return orjson.dumps(answer).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:  # integers beyond 64 bits, lone surrogates, non-string keys: json takes them
        return json.dumps(answer, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as error:
        request_id = answer.get("id") if isinstance(answer, dict) else None
        logger.warning("client stream: answer to %.100r is not JSON: %s", request_id, error)
        return orjson.dumps(
            {
                "id": request_id if isinstance(request_id, str | int) else None,
                "ok": False,
                "status": 500,
                "error": f"the answer could not be encoded as JSON ({error})",
            }
        ).decode()


def _leader(node: PaxosNode, group_id: int) -> dict[str, Any]:
    replica = node.replicas.get(group_id)
    return {"leader": replica.leader_id if replica is not None else None}


def _outcome(node: PaxosNode, client_id: Any, outcome: Outcome) -> dict[str, Any]:
    return {
        "id": client_id,
        "ok": True,
        "instance": outcome.instance,
        "result": outcome.result,
        "request_id": outcome.request_id,
        "duplicate": outcome.duplicate,
        **_leader(node, outcome.group_id),
    }


def _hello(node: PaxosNode) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "nodes": {str(n.node_id): f"{n.host}:{n.port}" for n in node.config.nodes},
        "leaders": {str(g): r.leader_id for g, r in node.replicas.items()},
        "max_requests_per_frame": MAX_REQUESTS_PER_FRAME,
        "max_frame_bytes": node.max_frame_size,
        # What a submit may hold: a client sends "machine" only to a node that takes it (an
        # older node refuses an unknown field with 400).
        "submit_fields": sorted(SUBMIT_FIELDS),
    }
