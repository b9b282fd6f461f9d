"""A tiny KV client for the Jepsen tests, with the outcome of every call classified.

Two transports for the same four operations:

``kv``        the KV endpoints (DESIGN.md §5): ``PUT/GET/DELETE /api/kv/<g>/<key>``,
              ``POST /api/kv/<g>/<key>/cas``; reads are linearizable, or ``?consistency=local``
              when the client is built with ``reads="local"`` (the unsafe negative control);
``commands``  ``POST /api/groups/<g>/commands/`` with a KV command; a get goes through the log.
``stream``    the pipelined client stream ``/ws/client/`` (consensus/api/stream.py): writes are
              ``submit`` requests with a KV command, gets are ``query`` requests (linearizable,
              or ``"consistency": "local"`` with ``reads="local"``).

Every call returns a ``Reply`` of type ``ok`` (with the normalized output), ``fail`` (it certainly
did not happen: the connection was refused, or the node rejected the request as invalid) or
``info`` (it may have happened: a timeout or a lost connection after the request was sent, a 503
- the command may sit in a leader's queue and be chosen later, a 500).

One connection per request: a refused connect is the one network error that proves the request
was never sent (a reused keep-alive connection could fail either way).

``LyingClient`` is the deliberately broken variant: it acknowledges writes without waiting for
the cluster (``acknowledge before commit``).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.sync.client import connect as ws_connect

from tests.fixtures.cluster import TOKEN, Cluster

from .history import FAIL, INFO, OK, UNKNOWN


@dataclass
class Reply:
    type: str
    output: Any = None
    error: str | None = None
    status: int | None = None


class NotSent(Exception):
    """The request never left this process (the node refused the connection)."""


def http_call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One HTTP request on a fresh connection. Raises ``NotSent`` if the connection could not
    be made, ``OSError`` (or ``http.client.HTTPException``) for anything after that."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            connection.connect()
        except OSError as error:
            raise NotSent(f"{type(error).__name__}: {error}") from None
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        all_headers.update(headers or {})
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        connection.close()


class Client:
    """One client (use one per thread: it keeps nothing shared but the cluster's ports)."""

    def __init__(
        self,
        cluster: Cluster,
        api: str = "kv",
        reads: str = "linearizable",
        timeout: float | None = None,
    ) -> None:
        if api not in ("kv", "commands", "stream") or reads not in ("linearizable", "local"):
            raise ValueError(f"api={api!r} reads={reads!r}")
        if api == "commands" and reads == "local":
            raise ValueError("the commands endpoint has no local reads")
        self.cluster = cluster
        self.api = api
        self.reads = reads
        self.timeout = timeout if timeout is not None else cluster.request_timeout + 2.0

    # ------------------------------------------------------------------ operations

    def get(self, node: int, group: int, key: str) -> Reply:
        if self.api == "stream":
            query = {"op": "get", "key": key}
            request = {"op": "query", "query": json.dumps(query), "consistency": self.reads}
            return self._stream(node, group, request, "get")
        if self.api == "commands":
            return self._command(node, group, {"op": "get", "key": key}, None, "get")
        query = "?consistency=local" if self.reads == "local" else ""
        return self._call(node, "GET", f"{self._path(group, key)}{query}", None, None, "get")

    def put(self, node: int, group: int, key: str, value: str, request_id: str | None) -> Reply:
        if self.api != "kv":
            command = {"op": "put", "key": key, "value": value}
            return self._command(node, group, command, request_id, "put")
        body = {"value": value}
        return self._call(node, "PUT", self._path(group, key), body, request_id, "put")

    def delete(self, node: int, group: int, key: str, request_id: str | None) -> Reply:
        if self.api != "kv":
            return self._command(node, group, {"op": "delete", "key": key}, request_id, "delete")
        return self._call(node, "DELETE", self._path(group, key), None, request_id, "delete")

    def cas(
        self,
        node: int,
        group: int,
        key: str,
        expected: str | None,
        value: str,
        request_id: str | None,
    ) -> Reply:
        if self.api != "kv":
            command = {"op": "cas", "key": key, "expected": expected, "value": value}
            return self._command(node, group, command, request_id, "cas")
        body = {"expected": expected, "value": value}
        return self._call(node, "POST", self._path(group, key) + "/cas", body, request_id, "cas")

    def call(self, f: str, node: int, group: int, key: str, **args: Any) -> Reply:
        if f == "get":
            return self.get(node, group, key)
        if f == "put":
            return self.put(node, group, key, args["value"], args.get("request_id"))
        if f == "delete":
            return self.delete(node, group, key, args.get("request_id"))
        if f == "cas":
            return self.cas(
                node, group, key, args["expected"], args["value"], args.get("request_id")
            )
        raise ValueError(f)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _path(group: int, key: str) -> str:
        return f"/api/kv/{group}/{urllib.parse.quote(key, safe='')}"

    def _command(
        self, node: int, group: int, command: dict[str, Any], request_id: str | None, f: str
    ) -> Reply:
        if self.api == "stream":
            request = {"op": "submit", "command": json.dumps(command)}
            if request_id is not None:
                request["request_id"] = request_id
            return self._stream(node, group, request, f)
        body: dict[str, Any] = {"command": json.dumps(command)}
        if request_id is not None:
            body["request_id"] = request_id
        reply = self._call(node, "POST", f"/api/groups/{group}/commands/", body, None, "command")
        if reply.type != OK:
            return reply
        result = reply.output.get("result") if isinstance(reply.output, dict) else None
        if not isinstance(result, dict) or "error" in result:
            # Chosen, but the state machine rejected it: no effect on the register.
            return Reply(FAIL, error=f"state machine: {result!r}", status=reply.status)
        return Reply(OK, _output(f, result), status=reply.status)

    def _stream(self, node: int, group: int, request: dict[str, Any], f: str) -> Reply:
        port = self.cluster.nodes[node].port
        try:
            answer = stream_call(port, {**request, "group": group}, self.timeout)
        except NotSent as error:
            return Reply(FAIL, error=f"not sent: {error}")
        except (OSError, TimeoutError, websockets.WebSocketException) as error:
            kind = "timeout" if isinstance(error, TimeoutError) else "lost"
            return Reply(INFO, error=f"{kind}: {type(error).__name__} {error}".strip())
        if answer.get("ok"):
            result = answer.get("result")
            if not isinstance(result, dict) or "error" in result:
                return Reply(FAIL, error=f"state machine: {result!r}")
            if f == "get":
                return Reply(OK, result["value"] if result.get("found") else None)
            return Reply(OK, _output(f, result))
        status = int(answer.get("status", 500))
        if 400 <= status < 500:
            return Reply(FAIL, error=f"{status}: {answer.get('error')}", status=status)
        return Reply(INFO, error=f"{status}: {answer.get('error')}", status=status)

    def _call(
        self,
        node: int,
        method: str,
        path: str,
        body: Any,
        request_id: str | None,
        f: str,
    ) -> Reply:
        headers = {"X-Request-Id": request_id} if request_id else None
        port = self.cluster.nodes[node].port
        try:
            status, answer = http_call(port, method, path, body, headers, self.timeout)
        except NotSent as error:
            return Reply(FAIL, error=f"not sent: {error}")
        except (OSError, http.client.HTTPException) as error:
            kind = "timeout" if isinstance(error, socket.timeout | TimeoutError) else "lost"
            return Reply(INFO, error=f"{kind}: {type(error).__name__} {error}".strip())
        if status == 200 or status == 204:
            if f == "command":
                return Reply(OK, answer, status=status)
            return Reply(OK, _output(f, answer or {}), status=status)
        if status == 404 and f == "get" and isinstance(answer, dict) and "key" in answer:
            return Reply(OK, None, status=status)  # the key is absent
        message = answer.get("error") if isinstance(answer, dict) else answer
        if 400 <= status < 500:
            # Rejected before anything was proposed (bad input, auth, unknown group).
            return Reply(FAIL, error=f"{status}: {message}", status=status)
        return Reply(INFO, error=f"{status}: {message}", status=status)


def stream_call(port: int, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One request on a fresh stream connection. Raises ``NotSent`` if it never left (no
    connection, no hello), ``OSError`` or ``websockets`` errors for anything after that."""
    url = f"ws://127.0.0.1:{port}/ws/client/"
    try:
        websocket = ws_connect(
            url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=timeout
        )
    except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
        raise NotSent(f"{type(error).__name__}: {error}") from None
    with websocket:
        try:
            json.loads(websocket.recv(timeout))  # the hello
        except (OSError, TimeoutError, websockets.ConnectionClosed) as error:
            raise NotSent(f"no hello: {type(error).__name__}: {error}") from None
        websocket.send(json.dumps([{"id": 1, **request}]))
        return json.loads(websocket.recv(timeout))[0]


def _output(f: str, result: dict[str, Any]) -> Any:
    if f == "get":
        return result.get("value")
    if f == "cas":
        return bool(result["succeeded"]), result.get("value", UNKNOWN)
    return None


class LyingClient(Client):
    """Broken on purpose: a write is acknowledged as soon as it is sent, before any node has
    committed it (the request runs on in a background thread). For negative controls only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[threading.Thread] = []

    def call(self, f: str, node: int, group: int, key: str, **args: Any) -> Reply:
        if f == "get":
            return super().call(f, node, group, key, **args)
        thread = threading.Thread(
            target=super().call, args=(f, node, group, key), kwargs=args, daemon=True
        )
        thread.start()
        self.threads.append(thread)
        output = (True, args.get("value")) if f == "cas" else None
        return Reply(OK, output)

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)
