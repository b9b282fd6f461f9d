"""Python client of the Paxos service: ``PaxosClient(host, port, token=...).submit(msg, group)``.

The seed's ``MyPaxosClient(host, port).submit(msg, group)`` works with one addition, the API token
(``token=...`` or ``$PAXOS_API_TOKEN``: the API refuses anonymous clients); ``MyPaxosClient`` is an
alias. Standard library only (``http.client``), so it can be copied next to any script.

    from consensus.client import PaxosClient
    client = PaxosClient("127.0.0.1", 33333, token="...",
                         nodes=[("127.0.0.1", 33334), ("127.0.0.1", 33335)])
    client.submit('{"type": "put", "key": "name", "value": "Mike"}', 1)   # the seed's message
    client.put("name", "Neo", group=2)
    client.get("name", group=1)            # 'Mike' (linearizable); consistency="local" is faster

Failover: a client given one node's address learns every node's address from the first answer
(``GET /api/nodes/``, once per client; a client given ``nodes`` keeps to them unless
``discover=True``), so it still fails over when that node goes. Every write gets a request id
before its first attempt (``new_request_id()``, or
yours). When a node cannot be reached, drops the connection, times out or answers 503 (no leader
/ no quorum), the same request goes to the next node with the *same* request id, so the command
is applied once whichever attempt got through. After trying every node the client waits for the
server's ``Retry-After`` (capped) and goes round again until ``retry_timeout`` runs out.

Connections are HTTP/1.1 keep-alive, one per node, reused across calls. A client object is not
thread-safe: give each thread its own.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_PORT = 33333
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_TIMEOUT = 30.0
MAX_RETRY_SLEEP = 1.0
DISCOVERY_TIMEOUT = 2.0
"""Seconds the one ``GET /api/nodes/`` of a client that was given one node may take."""
TOKEN_ENVIRONMENT_VARIABLE = "PAXOS_API_TOKEN"


#
# Request ids (defined here, not in ``consensus.request_ids``, so this file works on its own;
# ``consensus.request_ids`` re-exports ``new_request_id`` and says why the ids look like this)
#

_id_prefix = secrets.token_hex(8)
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    """Draw the prefix again in a forked child, so parent and child never share ids."""
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(8), itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)


def new_request_id() -> str:
    """A fresh id, unique across processes and restarts (28 hex digits, like a short UUID): a
    64-bit random prefix per process and a counter, so ids grow (cheap to index on the server).

    No ``os.getpid()`` here: a system call per id was 1-2% of a node's CPU under REST load."""
    return f"{_id_prefix}{next(_id_counter):012x}"


#
# Errors
#


class PaxosError(Exception):
    """Base of every error the client raises; ``status`` is the HTTP status (None: no answer).

    ``request_id``: on an error of a write (``submit``, ``put``, ``delete``, ``cas``), the
    request id it was sent with, yours or the one the client generated; None otherwise. After
    ``NoQuorum`` or ``Unavailable`` the outcome is unknown: retry with that id."""

    request_id: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after


class BadRequest(PaxosError):
    """400: the server refused the input (the message says why)."""


class PayloadTooLarge(BadRequest):
    """413: body, key or value above the server's limits."""


class AuthError(PaxosError):
    """401/403: no token, a wrong token, or not allowed."""


class NotFound(PaxosError):
    """404: unknown group or path."""


class RequestIdConflict(PaxosError):
    """409: the request id was already used for a different command (a retry must resend the
    same command; a new command needs a new request id)."""


class NoQuorum(PaxosError):
    """503 from every node until ``retry_timeout``: no leader or no majority."""


class Unavailable(PaxosError):
    """No node could be reached (connection refused, reset or timed out) until ``retry_timeout``.

    ``refused``: every attempt of the call was refused a connection, so no node received the
    request and a write of this call was not applied. False after a reset, a timeout or a 503
    (the request may have reached a node: the outcome is unknown)."""

    refused: bool = False


class NotAPaxosNode(PaxosError):
    """The server answered with something other than a Paxos node's JSON: the URL names some
    other web server, or a proxy answered with an error page. The message names the server, the
    status, the content type and the start of the body, in one line."""


#
# Results
#


@dataclass(frozen=True, slots=True)
class CommandResult:
    instance: int
    request_id: str
    result: Any
    duplicate: bool


class CasResult(NamedTuple):
    succeeded: bool
    value: str | None
    instance: int


#
# The client
#


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """``("h", 1)``, ``"h:1"`` or ``"http://h:1/"`` -> ``("h", 1)``."""
    if isinstance(address, tuple):
        host, port = address
        return str(host), int(port)
    text = address if "://" in address else f"http://{address}"
    parts = urlsplit(text)
    if parts.scheme not in {"http", ""}:
        raise ValueError(f"only http:// URLs are supported, not {address!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {address!r}")
    return parts.hostname, parts.port or DEFAULT_PORT


def node_addresses(
    host: str, port: int, nodes: Iterable[str | tuple[str, int]]
) -> list[tuple[str, int]]:
    """The first node, then the others, each once, as ``(host, port)``."""
    addresses = [parse_address((host, port))]
    for address in nodes:
        parsed = parse_address(address)
        if parsed not in addresses:
            addresses.append(parsed)
    return addresses


class PaxosClient:
    """A client for one cluster; ``host``/``port`` is the first node to try, ``nodes`` the others.

    ``timeout`` bounds one HTTP attempt (seconds); ``retry_timeout`` bounds a whole call with its
    failovers: no attempt starts after it, so a call ends at most one attempt later.
    ``retry_refused=False``: a call whose first round found every node refusing connections
    fails at once (``Unavailable`` with ``refused``) instead of retrying until ``retry_timeout``:
    nothing was sent, and a person at a shell would rather hear that now than in 30 s.
    ``token`` defaults to ``$PAXOS_API_TOKEN``. With ``discover`` (the default when no ``nodes``
    are given) the addresses of the cluster's other nodes are asked for once, after the first
    answer, and added to ``nodes``.
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
        discover: bool | None = None,
        retry_refused: bool = True,
    ) -> None:
        self.nodes: list[tuple[str, int]] = node_addresses(host, port, nodes)
        self._discover = len(self.nodes) == 1 if discover is None else discover
        self.token = token if token is not None else os.environ.get(TOKEN_ENVIRONMENT_VARIABLE)
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.retry_refused = retry_refused
        self._connections: dict[tuple[str, int], http.client.HTTPConnection] = {}
        self._current = 0
        """Index of the node that answered last: the next call starts there."""

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def __enter__(self) -> PaxosClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        nodes = ", ".join(f"{host}:{port}" for host, port in self.nodes)
        return f"<PaxosClient [{nodes}]>"

    # ------------------------------------------------------------------ commands

    def submit(self, msg: Any, group: int = 1, request_id: str | None = None) -> Any:
        """Commit ``msg`` to ``group`` and return the state machine's result (the seed's call).

        ``msg`` is the command string (JSON for the KV store, e.g. the seed's
        ``{"type": "put", "key": ..., "value": ...}``); a dict or list is JSON-encoded for you.
        """
        return self.submit_command(msg, group, request_id).result

    def submit_command(
        self, msg: Any, group: int = 1, request_id: str | None = None
    ) -> CommandResult:
        """Like ``submit``, with the instance, request id and duplicate flag."""
        command = msg if isinstance(msg, str) else json.dumps(msg)
        request_id = request_id or new_request_id()
        body = self._call(
            "POST",
            f"/api/groups/{int(group)}/commands/",
            {"command": command, "request_id": request_id},
            request_id=request_id,
        )
        return CommandResult(*_fields(body, "instance", "request_id", "result", "duplicate"))

    def query(self, query: Any, group: int = 1, *, consistency: str = "linearizable") -> Any:
        """The group's state machine's answer to ``query`` (its ``query()``), nothing written.

        ``query`` is a string (a dict or list is JSON-encoded for you); ``consistency="local"``
        reads the answering node's applied state without a read barrier: faster, maybe stale.
        """
        if consistency not in {"linearizable", "local"}:
            raise ValueError("consistency must be 'linearizable' or 'local'")
        text = query if isinstance(query, str) else json.dumps(query)
        body = {"query": text, "consistency": consistency}
        (result,) = _fields(self._call("POST", f"/api/groups/{int(group)}/query/", body), "result")
        return result

    # ------------------------------------------------------------------ the KV store

    def get(
        self, key: str, group: int = 1, *, consistency: str = "linearizable", default: Any = None
    ) -> Any:
        """The key's value, or ``default`` when it does not exist.

        ``consistency="local"`` reads the answering node's applied state without a round trip
        through the log: faster, possibly stale.
        """
        if consistency not in {"linearizable", "local"}:
            raise ValueError("consistency must be 'linearizable' or 'local'")
        path = _kv_path(group, key)
        if consistency == "local":
            path += "?consistency=local"
        try:
            (value,) = _fields(self._call("GET", path), "value")
            return value
        except NotFound as error:
            if isinstance(error.body, dict) and "key" in error.body:
                return default
            raise

    def put(self, key: str, value: str, group: int = 1, *, request_id: str | None = None) -> int:
        """Set ``key`` to ``value`` (strings); returns the instance the write was chosen in."""
        request_id = request_id or new_request_id()
        body = {"value": value, "request_id": request_id}
        answer = self._call("PUT", _kv_path(group, key), body, request_id=request_id)
        (instance,) = _fields(answer, "instance")
        return int(instance)

    def delete(self, key: str, group: int = 1, *, request_id: str | None = None) -> bool:
        """Delete ``key``; False when it did not exist."""
        request_id = request_id or new_request_id()
        path = f"{_kv_path(group, key)}?{urlencode({'request_id': request_id})}"
        (deleted,) = _fields(self._call("DELETE", path, request_id=request_id), "deleted")
        return bool(deleted)

    def cas(
        self,
        key: str,
        expected: str | None,
        value: str,
        group: int = 1,
        *,
        request_id: str | None = None,
    ) -> CasResult:
        """Set ``key`` to ``value`` only if it is ``expected`` now (None: only if absent)."""
        request_id = request_id or new_request_id()
        body = {"expected": expected, "value": value, "request_id": request_id}
        answer = self._call("POST", _kv_path(group, key) + "/cas", body, request_id=request_id)
        succeeded, value, instance = _fields(answer, "succeeded", "value", "instance")
        return CasResult(bool(succeeded), value, int(instance))

    # ------------------------------------------------------------------ cluster information

    def status(self) -> dict[str, Any]:
        """``GET /api/status/`` of the node that answers."""
        return self._call("GET", "/api/status/")

    def status_of(self, host: str, port: int) -> dict[str, Any]:
        """``GET /api/status/`` of one given node: one attempt, bounded by ``timeout``; no
        failover and no retry (``retry_timeout`` does not apply), so a node that cannot be
        reached raises ``Unavailable`` at once (a 503 raises ``NoQuorum``)."""
        return self._call("GET", "/api/status/", nodes=[(host, port)], retry=False)

    def check_state(self, group: int = 1) -> dict[str, Any]:
        """``POST /api/groups/<g>/state-check/``: put a state check in the group's log and
        compare the nodes' digests of it (README "Nodes whose state machines differ")."""
        return self._call("POST", f"/api/groups/{int(group)}/state-check/", {})

    def groups(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/groups/")

    def nodes_info(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/nodes/")

    def log(self, group: int = 1, *, after: int = 0, limit: int = 100) -> dict[str, Any]:
        query = urlencode({"after": after, "limit": limit})
        return self._call("GET", f"/api/groups/{int(group)}/log/?{query}")

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        nodes: Sequence[tuple[str, int]] | None = None,
        retry: bool = True,
        request_id: str | None = None,
    ) -> Any:
        """One API call with failover; returns the decoded JSON body of a 2xx answer.
        ``retry=False``: one round of attempts (one per node), then the last error.
        ``request_id``: a write's, set on the error it fails with."""
        try:
            return self._attempts(method, path, body, nodes, retry)
        except PaxosError as error:
            error.request_id = request_id
            raise

    def _attempts(
        self,
        method: str,
        path: str,
        body: Any,
        nodes: Sequence[tuple[str, int]] | None,
        retry: bool,
    ) -> Any:
        targets = list(nodes) if nodes is not None else self.nodes
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        deadline = time.monotonic() + self.retry_timeout
        start = self._current if nodes is None else 0
        last_error: PaxosError | None = None
        maybe_sent = False  # until an attempt may have reached a node, every one was refused
        rounds = 0
        while True:
            retry_after = 0.0
            for offset in range(len(targets)):
                if offset and last_error is not None and time.monotonic() >= deadline:
                    break  # no new attempt after the deadline: the call ends within one attempt
                index = (start + offset) % len(targets)
                address = targets[index]
                try:
                    status, answer, headers_in = self._send(address, method, path, payload, headers)
                except (OSError, http.client.HTTPException) as error:
                    maybe_sent = maybe_sent or not isinstance(error, ConnectionRefusedError)
                    last_error = Unavailable(f"{address[0]}:{address[1]}: {error or type(error)}")
                    continue
                maybe_sent = True
                if not _from_a_node(answer, headers_in):
                    if status != 503:
                        described = _not_a_node(address, status, headers_in, answer)
                        raise NotAPaxosNode(described, status=status)
                    # daphne's own answer to a request its application did not answer in time
                    # is an HTML 503: retried as a node's 503 is (its message adds the status)
                    answer = {"error": _not_a_node(address, None, headers_in, answer)}
                if status == 503:
                    seconds = _retry_after(headers_in.get("retry-after"))
                    retry_after = max(retry_after, seconds)
                    last_error = NoQuorum(
                        _message(answer, status), status=503, body=answer, retry_after=seconds
                    )
                    continue
                if nodes is None:
                    self._current = index
                if 200 <= status < 300:
                    if self._discover:
                        self._discover = False
                        self._learn_nodes(address)
                    return answer
                raise error_for_status(status, answer)
            rounds += 1
            remaining = deadline - time.monotonic()
            assert last_error is not None
            if isinstance(last_error, Unavailable):
                last_error.refused = not maybe_sent
            if remaining <= 0 or not retry or (not maybe_sent and not self.retry_refused):
                raise last_error
            time.sleep(retry_pause(rounds, retry_after, remaining))

    def _learn_nodes(self, address: tuple[str, int]) -> None:
        """Add the cluster's other nodes, as the node at ``address`` lists them, to ``nodes``.
        Best effort: a client that cannot learn them keeps the nodes it was given."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = self._connection(address)
        if connection.sock is not None:  # it runs inside the caller's first call: keep it short
            connection.sock.settimeout(min(self.timeout, DISCOVERY_TIMEOUT))
        try:
            status, answer, _ = self._send(address, "GET", "/api/nodes/", None, headers)
        except (OSError, http.client.HTTPException):
            return
        finally:
            if connection.sock is not None:
                connection.sock.settimeout(self.timeout)
        if status != 200 or not isinstance(answer, list):
            return
        for node in answer:
            try:
                if node.get("me"):
                    continue  # the address we reached it by may differ from its config's
                parsed = parse_address((str(node["host"]), int(node["port"])))
            except (AttributeError, KeyError, TypeError, ValueError):
                continue
            if parsed not in self.nodes:
                self.nodes.append(parsed)

    def _send(
        self,
        address: tuple[str, int],
        method: str,
        path: str,
        payload: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, Any, dict[str, str]]:
        """One request on the node's keep-alive connection; a connection the server closed while
        idle is reopened once (the request id makes repeating the request safe). When the
        reopening is refused, the first error stands: that request may have reached the node,
        so the call's failure must not read as "refused" (``Unavailable.refused``)."""
        first_error: BaseException | None = None
        for attempt in (1, 2):
            connection = self._connection(address)
            reused = connection.sock is not None
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._connections.pop(address, None)
                stale = reused and isinstance(
                    error, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                )
                if attempt == 1 and stale and not isinstance(error, socket.timeout):
                    first_error = error
                    continue
                if first_error is not None and isinstance(error, ConnectionRefusedError):
                    raise first_error from error
                raise
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
            answer = _decode(raw)
            return response.status, answer, {k.lower(): v for k, v in response.getheaders()}
        raise AssertionError("unreachable")

    def _connection(self, address: tuple[str, int]) -> http.client.HTTPConnection:
        connection = self._connections.get(address)
        if connection is None:
            connection = http.client.HTTPConnection(*address, timeout=self.timeout)
            self._connections[address] = connection
        return connection


MyPaxosClient = PaxosClient
"""The seed's name: ``MyPaxosClient("localhost", 33333).submit(msg, 1)``."""


#
# Helpers
#


def _kv_path(group: int, key: str) -> str:
    """The key's REST path; ``BadRequest`` for a key the API refuses (as ``AsyncPaxosClient``
    gets it from the node), raised here since no URL can carry it."""
    if not isinstance(key, str) or not key:
        raise BadRequest("a key is a non-empty string", status=400)
    if "/" in key:
        raise BadRequest(f"keys cannot contain '/': {key!r}", status=400)
    return f"/api/kv/{int(group)}/{quote(key, safe='')}"


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _fields(answer: Any, *names: str) -> tuple[Any, ...]:
    """The fields ``names`` of a node's JSON answer, in order; ``NotAPaxosNode`` when one is
    missing (a JSON server that is not a Paxos node, or another API at that URL): one line,
    not a KeyError from inside the client."""
    if isinstance(answer, dict) and all(name in answer for name in names):
        return tuple(answer[name] for name in names)
    missing = [name for name in names if not isinstance(answer, dict) or name not in answer]
    raise NotAPaxosNode(
        f"the answer has no {', '.join(repr(name) for name in missing)}, as a Paxos node's "
        f"would: {_excerpt(answer)}"
    )


def _from_a_node(answer: Any, headers: dict[str, str]) -> bool:
    """Whether an answer is what a Paxos node sends: a JSON object or array, said to be JSON
    (``application/json``, ``application/problem+json``)."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    json_type = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    return json_type and isinstance(answer, dict | list)


BODY_EXCERPT = 80
"""Characters of a body that ``NotAPaxosNode`` quotes."""


def _not_a_node(
    address: tuple[str, int], status: int | None, headers: dict[str, str], answer: Any
) -> str:
    """One line on an answer that is no Paxos node's: the server, its status (unless None),
    content type and the start of its body (``_excerpt``)."""
    host, port = address
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    what = [f"HTTP {status}"] if status is not None else []
    what.append(headers.get("content-type") or "no content type")
    body = "an empty body" if answer is None else _excerpt(answer)
    return f"the server at {url} did not answer like a Paxos node ({', '.join(what)}): {body}"


def _excerpt(answer: Any) -> str:
    """At most ``BODY_EXCERPT`` characters of an answer (a page's text, or JSON), escaped as
    Python escapes a string: a page's newlines and control characters stay out of a terminal."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return repr(text[:BODY_EXCERPT]) + ("..." if len(text) > BODY_EXCERPT else "")


def _message(answer: Any, status: int) -> str:
    if isinstance(answer, dict) and "error" in answer:
        return f"{answer['error']} (HTTP {status})"
    return f"HTTP {status}: {answer!r}"[:500]


def retry_pause(rounds: int, retry_after: float, remaining: float) -> float:
    """Seconds to wait after ``rounds`` rounds of attempts over every node failed: the server's
    ``Retry-After`` if it said one (> 0), else 0.1, 0.2, 0.4... (backing off); at most
    ``MAX_RETRY_SLEEP`` and the ``remaining`` time of the call. Both clients use it.
    (The exponent is capped: 2**1100 seconds is no float, and a call retried for an hour
    goes that many rounds.)"""
    backoff = 0.05 * 2 ** min(rounds, 16)
    return max(0.0, min(retry_after or backoff, MAX_RETRY_SLEEP, remaining))


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


def error_for_status(status: int, answer: Any) -> PaxosError:
    """The exception for an error answer (HTTP or stream status and its JSON body)."""
    message = _message(answer, status)
    kind: type[PaxosError] = PaxosError
    if status == 413:
        kind = PayloadTooLarge
    elif status == 400:
        kind = BadRequest
    elif status in (401, 403):
        kind = AuthError
    elif status == 404:
        kind = NotFound
    elif status == 409:
        kind = RequestIdConflict
    return kind(message, status=status, body=answer)


__all__ = [
    "AuthError",
    "BadRequest",
    "CasResult",
    "CommandResult",
    "MyPaxosClient",
    "NoQuorum",
    "NotFound",
    "PaxosClient",
    "PaxosError",
    "PayloadTooLarge",
    "RequestIdConflict",
    "Unavailable",
    "new_request_id",
]
