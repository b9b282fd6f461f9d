"""The lean async path for the hot endpoints (commands, KV get/put/delete/cas).

Why not DRF here: a DRF view costs 1.5-2.5 ms of CPU per request under daphne even when it does
nothing (measured on a 2-core machine), more than a whole Paxos round on loopback. These views are
plain async Django views with the same URLs, JSON and auth as the rest of the API. What DRF would do
for them lives here once: method dispatch (405), authentication (401/403), body limits (413), JSON
parsing and validation (400), the runtime's errors mapped to 404/503 + ``Retry-After``, and a JSON
500 instead of an HTML page if something unexpected breaks. The DRF serializers in
``serializers.py`` still describe these endpoints in the OpenAPI schema (``documented_by``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from consensus.registry import registry
from consensus.request_ids import request_id_problem
from consensus.runtime import (
    NoQuorumError,
    Outcome,
    PaxosNode,
    SubmitError,
    UnknownGroupError,
    get_node,
)
from consensus.statemachine import validation_refusal

from .authentication import authenticate_request
from .exceptions import ApiError, error_response

logger = logging.getLogger("consensus.api")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_KEY_BYTES = 1024
DEFAULT_MAX_VALUE_BYTES = 256 * 1024
KV_STORE = "kv"
"""The name the KV store registers under (``kvstore/statemachines.py``; the API may not import
it): a KV request to a group of another machine is a 404 that names both."""
RESERVED_REQUEST_ID_PREFIX = "paxos:"
"""The runtime's own markers (read barriers) use it; a client id there would confuse them."""

View = Callable[..., Awaitable[HttpResponse]]


# --------------------------------------------------------------------------- limits


def max_body_bytes() -> int:
    return int(getattr(settings, "PAXOS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def max_key_bytes() -> int:
    return int(getattr(settings, "PAXOS_MAX_KEY_BYTES", DEFAULT_MAX_KEY_BYTES))


def max_value_bytes() -> int:
    return int(getattr(settings, "PAXOS_MAX_VALUE_BYTES", DEFAULT_MAX_VALUE_BYTES))


# --------------------------------------------------------------------------- the decorator


def lean_view(*methods: str) -> Callable[[View], View]:
    """Make an async function a lean API view answering only ``methods``.

    The view runs after authentication; it raises ``ApiError`` for expected failures. CSRF is
    checked by ``authenticate_request`` for session users only (token clients have no cookie).
    """
    allowed = frozenset(method.upper() for method in methods)
    allow_header = ", ".join(sorted(allowed))

    def decorator(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                return error_response(
                    405,
                    f"method {request.method} not allowed here (allowed: {allow_header})",
                    headers={"Allow": allow_header},
                )
            try:
                await authenticate_request(request)
                return await view(request, *args, **kwargs)
            except ApiError as error:
                return error.response()
            except Exception:  # noqa: BLE001 - last resort: JSON, logged, never a traceback page
                logger.exception("%s %s failed", request.method, request.path)
                return error_response(500, "internal error (see the node's log)")

        wrapper.allowed_methods = allowed  # type: ignore[attr-defined]
        return csrf_exempt(wrapper)

    return decorator


def documented_by(doc_view: type) -> Callable[[View], View]:
    """Let drf-spectacular document a lean view through the DRF class ``doc_view``.

    DRF's schema generator only looks at URL callbacks with a ``cls`` (an ``APIView``); this sets
    ``cls``/``initkwargs`` on the function so the generator includes the URL and instantiates
    ``doc_view`` (whose methods carry ``@extend_schema``) to describe it. Serving is unaffected.
    """

    def decorator(view: View) -> View:
        view.cls = doc_view  # type: ignore[attr-defined]
        view.initkwargs = {}  # type: ignore[attr-defined]
        return view

    return decorator


# --------------------------------------------------------------------------- input


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or ``ApiError`` 413 (too large) / 400 (not a JSON object)."""
    limit = max_body_bytes()
    check_content_length(request.headers.get("Content-Length"), limit)
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(413, f"request body too large (limit {limit} bytes)") from None
    return parse_json_object(body, limit)


def check_content_length(length: str | None, limit: int) -> None:
    """Refuse a declared body above ``limit`` before reading it (413), or a bad header (400)."""
    if length is None:
        return
    try:
        declared = int(length)
    except ValueError:
        raise ApiError(400, "Content-Length is not a number") from None
    if declared > limit:
        raise ApiError(413, f"request body too large: {declared} bytes (limit {limit})")


def parse_json_object(body: bytes, limit: int) -> dict[str, Any]:
    """``body`` as a JSON object, or ``ApiError`` 413 (above ``limit``) / 400."""
    if len(body) > limit:
        raise ApiError(413, f"request body too large: {len(body)} bytes (limit {limit})")
    if not body:
        raise ApiError(400, "send a JSON object as the request body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {json_kind(data)}")
    return data


def reject_unknown_fields(data: Mapping[str, Any], known: frozenset[str]) -> None:
    """A typo (``"vaule"``) should fail, not be silently ignored."""
    unknown = sorted(set(data) - known)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def require_string(data: Mapping[str, Any], field: str, *, max_bytes: int | None = None) -> str:
    """``data[field]`` as a string (400 when missing or not a string; 413 above ``max_bytes``)."""
    if field not in data:
        raise ApiError(400, f"missing field {field!r}")
    return check_text(data[field], field, max_bytes=max_bytes)


def check_text(value: Any, field: str, *, max_bytes: int | None = None) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be a string, not {json_kind(value)}")
    if "\x00" in value:
        raise ApiError(400, f"{field} must not contain NUL characters")
    if not value.isascii():
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:  # an escaped lone surrogate inside a command's JSON text
            raise ApiError(400, f"{field} is not valid unicode (a lone surrogate)") from None
    else:
        encoded = None
    if max_bytes is not None:
        size = len(value) if encoded is None else len(encoded)
        if size > max_bytes:
            raise ApiError(413, f"{field} too large: {size} bytes (limit {max_bytes})")
    return value


def check_key(key: Any) -> str:
    """A KV key: a non-empty string without '/' of at most ``PAXOS_MAX_KEY_BYTES`` (the REST
    routes and the client stream's KV commands; a URL cannot carry a '/' in a key)."""
    if key == "":
        raise ApiError(400, "the key must not be empty")
    check_text(key, "key", max_bytes=max_key_bytes())
    if "/" in key:
        raise ApiError(400, f"keys cannot contain '/': {key!r}")
    return key


def require_value(data: Mapping[str, Any], field: str = "value") -> str:
    """``data[field]`` as a KV value: a string of at most ``PAXOS_MAX_VALUE_BYTES`` (413)."""
    return require_string(data, field, max_bytes=max_value_bytes())


def check_value(value: Any, field: str = "value") -> str:
    """A KV value (a cas's ``expected``): a string of at most ``PAXOS_MAX_VALUE_BYTES`` (413)."""
    return check_text(value, field, max_bytes=max_value_bytes())


def check_for_machine(node: PaxosNode, group_id: int, text: str) -> None:
    """A state machine's own limits on a command or query before it is proposed or run
    (``StateMachine.validate``): ``ApiError`` with its refusal. An unknown group passes: the
    submit or query says so."""
    machine = node.machines.get(group_id)
    if machine is not None and (refusal := validation_refusal(machine, group_id, text)):
        raise ApiError(*refusal)


def query_error(node: PaxosNode, group_id: int, query: str, error: Exception) -> ApiError:
    """A ``QueryError`` as the API's answer: 400 with the machine's reason; but a KV get (what
    the clients' ``get`` sends) to a group that runs another machine is the KV routes' 404."""
    if _is_kv_get(query) and (refusal := machine_refusal(node, group_id, KV_STORE)):
        return refusal
    return ApiError(400, str(error))


def _is_kv_get(query: str) -> bool:
    try:
        data = orjson.loads(query)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("op", data.get("type")) == "get" and "key" in data


def machine_refusal(node: PaxosNode, group_id: int, name: str) -> ApiError | None:
    """None when group ``group_id`` runs the state machine registered as ``name``: its machine
    is an instance of that class (a subclass counts, whatever name it is registered under);
    else the 404 that names both (``not_the_kv_store`` for the KV store). A group without a
    machine, or a name nobody registered, runs no such machine. The one answer for the KV
    routes, the stream's ``"machine"`` and a KV get's ``QueryError``."""
    machine = node.machines.get(group_id)
    if registry.is_registered(name) and isinstance(machine, registry.get(name)):
        return None
    if name == KV_STORE:
        return not_the_kv_store(group_id, machine)
    runs = registry.name_of(machine)
    return ApiError(404, f'group {group_id} does not run "{name}"; it runs "{runs}"')


def not_the_kv_store(group_id: int, machine: object) -> ApiError:
    """404 for a KV request to a group that runs another state machine (REST and the stream)."""
    return ApiError(
        404,
        f'group {group_id} does not run the KV store ("{KV_STORE}"); it runs '
        f'"{registry.name_of(machine)}"',
    )


def request_id_from(request: HttpRequest, data: Mapping[str, Any] | None = None) -> str | None:
    """The client's request id: the body's ``request_id``, else the ``X-Request-Id`` header.

    The same id sent again (to any node) returns the first result instead of applying twice.
    """
    return request_id_of(data, request.headers.get("X-Request-Id"))


def request_id_of(data: Mapping[str, Any] | None, header: str | None) -> str | None:
    """``request_id_from`` for callers without an ``HttpRequest`` (the raw ASGI routes)."""
    if data is not None and data.get("request_id") is not None:
        return check_request_id(data["request_id"])
    return check_request_id(header)


def check_request_id(value: Any) -> str | None:
    """A client request id as given (None: none given), or 400 for one the log cannot take."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"request_id must be a string, not {json_kind(value)}")
    problem = request_id_problem(value)
    if problem is not None:
        raise ApiError(400, problem)
    if value.startswith(RESERVED_REQUEST_ID_PREFIX):
        raise ApiError(
            400, f"request ids starting with {RESERVED_REQUEST_ID_PREFIX!r} are reserved"
        )
    return value


# --------------------------------------------------------------------------- the runtime


def require_node() -> PaxosNode:
    node = get_node()
    if node is None:
        raise ApiError(
            503,
            "this process runs no Paxos node (start it with manage.py runpaxos)",
            retry_after=1,
        )
    return node


def require_group(node: PaxosNode, group_id: int) -> None:
    if group_id not in node.replicas:
        if node.is_starting(group_id):
            # The node serves HTTP while it still recovers its groups one by one.
            raise ApiError(503, f"group {group_id} is still starting", retry_after=0.5)
        raise unknown_group(node, group_id)


def unknown_group(node: PaxosNode, group_id: int) -> ApiError:
    known = ", ".join(str(g) for g in sorted(node.config.group_ids))
    return ApiError(
        404,
        f"unknown group {group_id} (this node's config lists groups {known}; a group must be "
        'listed in "groups" in every node\'s config)',
    )


def runtime_error(node: PaxosNode, group_id: int, error: Exception) -> ApiError:
    """The runtime's refusals as API errors: 404 unknown group, 409 for a request id reused
    for a different command, 413 for a command too large, 400 for a request id the log cannot
    take, 503 + Retry-After for the other
    ``SubmitError``s (no quorum, overloaded, starting, shutting down)."""
    if isinstance(error, UnknownGroupError):
        return unknown_group(node, group_id)
    if isinstance(error, SubmitError):
        if error.http_status != 503:
            return ApiError(error.http_status, str(error))
        return ApiError(503, str(error), retry_after=error.retry_after)
    raise TypeError(f"not a runtime refusal: {error!r}")


async def submit(node: PaxosNode, group_id: int, command: str, request_id: str | None) -> Outcome:
    """``node.submit`` with its errors as API errors (``runtime_error``).

    A 503 names the command's request id (the client's, or the one the node made): a command
    that timed out may still be chosen, and only a retry with the same id is safe to send."""
    try:
        return await node.submit(group_id, command, request_id)
    except (UnknownGroupError, SubmitError) as error:
        refusal = runtime_error(node, group_id, error)
        if refusal.status_code == 503 and getattr(error, "request_id", None):
            refusal.extra["request_id"] = error.request_id
        raise refusal from None


__all__ = [
    "ApiError",
    "NoQuorumError",
    "check_key",
    "check_request_id",
    "check_text",
    "check_value",
    "documented_by",
    "lean_view",
    "machine_refusal",
    "max_value_bytes",
    "not_the_kv_store",
    "read_json_object",
    "reject_unknown_fields",
    "request_id_from",
    "require_group",
    "require_node",
    "require_string",
    "require_value",
    "runtime_error",
    "submit",
]
