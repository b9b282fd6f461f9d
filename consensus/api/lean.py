"""A lean ASGI front for the hot endpoints: the same views, without Django's middleware stack.

Under daphne every Django middleware written in the classic style (sessions, CSRF, auth,
messages...) costs a hop to a worker thread and back, per request, in both directions; together with
the ``request_started``/``request_finished`` signals that is most of a command's latency (measured
on a 2-core machine: 1.5-2.5 ms of CPU for a view that does nothing). The hot endpoints (commands
and the KV store) authenticate bearer tokens themselves and need none of that middleware, so
requests for them that carry an ``Authorization`` header and no cookie are served here: Django
builds the request, resolves the URL and runs the very same view; nothing else runs.

Anything else (a browser with a session cookie, the admin, the dashboard, DRF endpoints) goes
to the full Django application, so behaviour is identical and only the cost differs.

The hottest requests can skip Django's request and URL resolution too: a ``RawRoute`` (a regex
and a handler that returns the JSON answer or raises ``ApiError``) is served straight from the
ASGI scope. Building the ``HttpRequest``, resolving the URL and the response object cost about
140 µs of a KV put; a raw route about 25 µs. The project wires the KV store's GET and PUT this
way (``kvstore/api/asgi.py``), sharing the views' code, so answers are the same byte for byte
(``tests/api/test_raw_routes.py`` compares them).
"""

from __future__ import annotations

import functools
import io
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.urls import get_resolver

from consensus.storage.reconnect import reconnecting

from .authentication import check_bearer
from .exceptions import ApiError, error_response, json_bytes
from .fastpath import check_content_length, max_body_bytes

logger = logging.getLogger("consensus.api")

UNDECODABLE_PATH = "the path is not valid UTF-8 after percent-decoding"
"""The 400 for an API path whose percent-escapes are not UTF-8 (``undecodable_api_path``)."""

HOT_PATHS = re.compile(r"^/api/(kv/\d+/|groups/\d+/(commands|query)/$)")
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""What load balancers, supervisors and Prometheus poll, with no token and maybe a cookie: their
views use no session, CSRF or user, so a GET of them is served lean too. Through Django's full
stack each probe started two threads from the event loop (asgiref's per-request executor and
its shutdown) and hopped to a worker thread once per classic middleware (a review: 6.5-8 ms of
loop CPU per probe, against 2.8 ms for a KV GET)."""

Scope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What a raw route sees of a request."""

    method: str
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with commas, as Django's ``META`` does."""
    query: dict[str, str]
    """The last value of each parameter, as ``QueryDict.get`` gives it."""
    body: bytes


RawHandler = Callable[[RawRequest, re.Match[str]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RawRoute:
    """A path regex, the methods it takes (others go on to Django), and its handler. The
    handler returns the 200 answer's JSON data or raises ``ApiError``."""

    pattern: re.Pattern[str]
    methods: frozenset[str]
    handler: RawHandler


class LeanRouter:
    """ASGI app: hot bearer-token requests to a raw route or ``LeanHandler``, everything else to
    Django."""

    def __init__(self, django_app: Any, raw_routes: Sequence[RawRoute] = ()) -> None:
        self.django_app = django_app
        self.lean = LeanHandler()
        self.raw_routes = tuple(raw_routes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and undecodable_api_path(scope):
            await send_json(send, 400, {"error": UNDECODABLE_PATH})
        elif scope["type"] == "http" and _is_lean(scope):
            for route in self.raw_routes:
                match = route.pattern.match(scope["path"])
                if match is not None and scope["method"] in route.methods:
                    await serve_raw(route, match, scope, receive, send)
                    return
            await self.lean(scope, receive, send)
        elif scope["type"] == "http":
            replay = await bounded_body(scope, receive, send)
            if replay is not None:
                await self.django_app(scope, replay, send)
        else:
            await self.django_app(scope, receive, send)


async def bounded_body(scope: Scope, receive: Any, send: Any) -> Any | None:
    """Read the body of a request for Django's full stack within ``PAXOS_MAX_BODY_BYTES``, and
    return a ``receive`` that hands it to Django; None once it answered 413 (or 400 for a bad
    ``Content-Length``) or the client left.

    Django's ``ASGIHandler`` reads a whole body, of any size, into a temporary file before a
    view or an authentication class sees the request: without this, a client without a token
    (or with a session cookie) could make a node store gigabytes. The hot paths read within the
    same limit (``read_body``)."""
    try:
        body = await read_body(scope, receive, max_body_bytes())
    except ApiError as error:
        status, data, extra = error.parts()
        await send_json(send, status, data, extra)
        return None
    if body is None:
        return None
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return dict(await receive())  # Django listens for the disconnect
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def serve_raw(
    route: RawRoute, match: re.Match[str], scope: Scope, receive: Any, send: Any
) -> None:
    """Answer a request with a raw route, as the lean Django path would: the token first (a
    client with a wrong one makes the node read no body), then the body limit, then the
    handler; a JSON 500 if something unexpected breaks."""
    headers = request_headers(scope)
    extra: dict[str, str] = {}
    try:
        check_bearer(headers["authorization"])
        body = await read_body(scope, receive, max_body_bytes())
        if body is None:
            return  # the client went away
        query = dict(parse_qsl(scope.get("query_string", b"").decode("utf-8", "replace"), True))
        request = RawRequest(scope["method"], headers, query, body)
        status, data = 200, await route.handler(request, match)
    except ApiError as error:
        status, data, extra = error.parts()
    except Exception:  # noqa: BLE001 - never a traceback page on the API
        logger.exception("%s %s failed", scope["method"], scope["path"])
        status, data = 500, {"error": "internal error (see the node's log)"}
    await send_json(send, status, data, extra)


async def send_json(
    send: Any, status: int, data: Any, headers: dict[str, str] | None = None
) -> None:
    """A whole JSON response: ``data`` with ``status`` and ``headers`` (names as given)."""
    payload = json_bytes(data)
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ),
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": payload})


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, repeated ones joined with commas (Django's
    ``META`` does the same, so both paths see one value)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def has_valid_token(headers: dict[str, str]) -> bool:
    """Whether the ``Authorization`` header holds one of the API's tokens (``check_bearer``)."""
    try:
        check_bearer(headers.get("authorization", ""))
    except ApiError:
        return False
    return True


def undecodable_api_path(scope: Scope) -> bool:
    """An API path whose percent-escapes are not UTF-8, decoded leniently by the server:
    uvicorn and (for ``/api/`` only, so that the answer is this JSON) the node's daphne
    protocol read each invalid sequence as U+FFFD, so ``/api/kv/1/%ff`` and ``/api/kv/1/%fe``
    would both be key U+FFFD. Cheap for every other request: one scan for U+FFFD."""
    path = scope.get("path", "")
    if "\ufffd" not in path or not path.startswith("/api/"):
        return False
    raw_path = scope.get("raw_path")  # optional in ASGI: without it, the path is all there is
    if raw_path is None:
        return False
    try:
        unquote(raw_path.decode("utf-8"), errors="strict")
    except UnicodeDecodeError:
        return True
    return False


async def read_body(scope: Scope, receive: Any, limit: int) -> bytes | None:
    """The whole request body (None if the client disconnected), or ``ApiError`` 413: at once
    for a declared ``Content-Length`` above ``limit`` (before a client that sent ``Expect:
    100-continue`` is invited to send it), else as soon as the body grows past ``limit``."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            check_content_length(value.decode("latin-1"), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_lean(scope: Scope) -> bool:
    """A hot path with a bearer token and no cookie, or a GET of a probe (``PROBE_PATHS``), with
    an allowed ``Host`` and no root path: what only Django's full stack checks
    (``ALLOWED_HOSTS``, a ``Daphne-Root-Path`` header that would make the path another view's)
    goes to it."""
    if scope.get("root_path"):
        return False
    path = scope.get("path", "")
    probe = path in PROBE_PATHS and scope.get("method") == "GET"
    if not probe and not HOT_PATHS.match(path):
        return False
    has_token = False
    host = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie" and not probe:
            return False
        if name == b"authorization":
            has_token = True
        elif name == b"host":
            host = value
    if host is None:  # Django falls back to the server's name
        host = str((scope.get("server") or ("",))[0]).encode("latin-1")
    return (probe or has_token) and _allowed_host(host)


@functools.lru_cache(maxsize=256)
def _allowed_host(host: bytes) -> bool:
    """Django's ``HttpRequest.get_host`` check, cached per header value (a node sees few)."""
    domain, _port = split_domain_port(host.decode("latin-1"))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


class LeanHandler(ASGIHandler):
    """Django's ASGI handler minus middleware and request signals."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = self._get_response_async

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            # A wrong token reads no body, as on a raw route: its view refuses it (404, 405 or
            # the same 401) without one. A probe (a GET) has none to read.
            authorized = has_valid_token(request_headers(scope))
            body = await read_body(scope, receive, max_body_bytes()) if authorized else b""
        except ApiError as error:
            await self.send_response(error.response(), send)
            return
        if body is None:
            return
        request, error = self.create_request(scope, io.BytesIO(body))
        if request is None:
            await self.send_response(error, send)
            return
        response = await self._respond(request)
        if not response.streaming and not response.has_header("Content-Length"):
            # What Django's CommonMiddleware adds on the full stack: without it the server
            # sends the body chunked (an HTTP/1.0 health checker reads until the close).
            response["Content-Length"] = str(len(response.content))
        await self.send_response(response, send)

    async def _respond(self, request: HttpRequest) -> HttpResponse:
        try:
            match = get_resolver().resolve(request.path_info)
        except Exception:  # noqa: BLE001 - Resolver404 and friends: answer like the API does
            return error_response(404, f"no endpoint at {request.path_info}")
        request.resolver_match = match
        view = match.func
        if not iscoroutinefunction(view):
            view = sync_to_async(reconnecting(view))
        try:
            return await view(request, *match.args, **match.kwargs)
        except Exception:  # noqa: BLE001 - never an HTML 500 page on the API
            logger.exception("lean view %s failed", match.view_name)
            return error_response(500, "internal error")
