"""KV endpoints (DESIGN.md §5), served by lean async views (``consensus.api.fastpath``).

Writes become KV commands chosen through the group's log; the node returns the state machine's
result. Reads are served by any node from its local ``Entry`` rows:

- ``linearizable`` (default): first ``node.read_barrier(group)``, which returns once this node has
  applied every command acknowledged anywhere before the read started; then the local row. So a
  read issued after a write was acknowledged (by any node) sees that write or a later one.
- ``?consistency=local``: the local applied state right away, no round; it may be stale.

Every response says which one it used. Reads go through ``consensus.api.reads``: the gets of one
loop turn share one read barrier and one query on a worker thread, so a read never blocks the
event loop that also runs the Paxos node, and concurrent readers cost little more than one.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consensus.api import fastpath
from consensus.api.exceptions import ApiError, json_response
from consensus.api.reads import reads_of
from consensus.api.views import COMMAND_ERRORS, error_responses
from consensus.runtime import Outcome, PaxosNode, SubmitError, UnknownGroupError
from consensus.statemachine import QueryError
from kvstore.statemachines import CommandError, load_command

from .serializers import (
    CasRequestSerializer,
    CasResponseSerializer,
    DeleteResponseSerializer,
    EntrySerializer,
    PutRequestSerializer,
    PutResponseSerializer,
)

CONSISTENCY_LEVELS = ("linearizable", "local")
PUT_FIELDS = frozenset({"value", "request_id"})
CAS_FIELDS = frozenset({"expected", "value", "request_id"})

PATH_PARAMETERS = [
    OpenApiParameter("group_id", OpenApiTypes.INT, OpenApiParameter.PATH),
    OpenApiParameter(
        "key",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description="Any non-empty string without '/' (percent-encode it in the URL), at most "
        "PAXOS_MAX_KEY_BYTES bytes of UTF-8.",
    ),
]
REQUEST_ID_HEADER = OpenApiParameter(
    "X-Request-Id",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Request id for exactly-once retries (alternative to the body's request_id).",
)


#
# Helpers
#


def kv_group(group_id: int) -> PaxosNode:
    """The running node, after checking ``group_id`` exists and runs the KV store."""
    node = fastpath.require_node()
    fastpath.require_group(node, group_id)
    if refusal := fastpath.machine_refusal(node, group_id, fastpath.KV_STORE):
        raise refusal
    return node


def check_command(text: str) -> None:
    """The REST routes' limits on a KV command or query that arrives as text (the client
    stream's submits and queries to a KV group, through ``KVStateMachine.validate``):
    the key as ``fastpath.check_key``, a value and a cas's expected value as the bodies of PUT
    and POST .../cas. ``ApiError`` with the REST API's status and words. Text that is no KV
    command at all is left to the state machine, which says why."""
    try:
        data = load_command(text)
    except CommandError:
        return
    if not isinstance(data, dict) or "key" not in data:
        return
    fastpath.check_key(data["key"])
    op = data.get("op", data.get("type"))
    if op in ("put", "cas"):
        fastpath.require_value(data)
    if op == "cas" and data.get("expected") is not None:
        fastpath.check_value(data["expected"], "expected")


def encode_command(op: str, key: str, **fields: Any) -> str:
    return orjson.dumps({"op": op, "key": key, **fields}).decode()


def write_result(outcome: Outcome) -> dict[str, Any]:
    """The state machine's result plus the write's instance and request id."""
    result = outcome.result
    if not isinstance(result, dict):
        raise ApiError(500, f"unexpected KV result {result!r}")
    if "error" in result:
        # Input is validated before submitting, so only a retry whose first attempt carried a
        # different command can land here; the error is the first result, as for any retry.
        raise ApiError(400, str(result["error"]), extra={"instance": outcome.instance})
    return {
        **result,
        "instance": outcome.instance,
        "request_id": outcome.request_id,
        "duplicate": outcome.duplicate,
    }


#
# /api/kv/<g>/<key>
#


class EntryDocView(APIView):
    """Documentation only: ``entry_view`` serves the URL."""

    @extend_schema(
        operation_id="kv_retrieve",
        summary="Read a key",
        description="Linearizable by default (a read index the leader confirms with a majority "
        "heartbeat round, or a barrier through the log with PAXOS_READ_MODE=log; then the local "
        "state once it has applied that far; any node serves it). consistency=local reads this "
        "node's applied state without a round and may be stale. The response says which one "
        "was used.",
        parameters=[
            *PATH_PARAMETERS,
            OpenApiParameter(
                "consistency",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(CONSISTENCY_LEVELS),
                required=False,
            ),
        ],
        responses={200: EntrySerializer, **error_responses(400, 401, 403, 404, 413, 503)},
        tags=["kv"],
    )
    def get(self, request: Request, group_id: int, key: str) -> Response:  # pragma: no cover
        raise NotImplementedError

    @extend_schema(
        operation_id="kv_update",
        summary="Write a key",
        parameters=[*PATH_PARAMETERS, REQUEST_ID_HEADER],
        request=PutRequestSerializer,
        responses={
            200: PutResponseSerializer,
            **error_responses(*COMMAND_ERRORS),
        },
        tags=["kv"],
    )
    def put(self, request: Request, group_id: int, key: str) -> Response:  # pragma: no cover
        raise NotImplementedError

    @extend_schema(
        operation_id="kv_destroy",
        summary="Delete a key",
        description="200 with deleted=false when the key did not exist (a delete is idempotent).",
        parameters=[
            *PATH_PARAMETERS,
            REQUEST_ID_HEADER,
            OpenApiParameter("request_id", OpenApiTypes.STR, OpenApiParameter.QUERY),
        ],
        responses={
            200: DeleteResponseSerializer,
            **error_responses(*COMMAND_ERRORS),
        },
        tags=["kv"],
    )
    def delete(self, request: Request, group_id: int, key: str) -> Response:  # pragma: no cover
        raise NotImplementedError


@fastpath.documented_by(EntryDocView)
@fastpath.lean_view("GET", "PUT", "DELETE")
async def entry_view(request: HttpRequest, group_id: int, key: str) -> HttpResponse:
    fastpath.check_key(key)
    if request.method == "GET":
        return await read_entry(request, group_id, key)
    if request.method == "PUT":
        return await put_entry(request, group_id, key)
    return await delete_entry(request, group_id, key)


async def read_entry(request: HttpRequest, group_id: int, key: str) -> HttpResponse:
    return json_response(await read(group_id, key, request.GET.get("consistency", "linearizable")))


async def put_entry(request: HttpRequest, group_id: int, key: str) -> HttpResponse:
    data = fastpath.read_json_object(request)
    return json_response(await put(group_id, key, data, request.headers.get("X-Request-Id")))


async def read(group_id: int, key: str, consistency: str) -> dict[str, Any]:
    """A GET's answer (the Django view and the raw ASGI route share it); ``ApiError`` else."""
    if consistency not in CONSISTENCY_LEVELS:
        raise ApiError(400, f"consistency must be linearizable or local, not {consistency!r}")
    node = kv_group(group_id)
    # Through the read batcher: the gets of one loop turn share one read barrier and one query.
    try:
        found = await reads_of(node).query(
            group_id, encode_command("get", key), linearizable=consistency == "linearizable"
        )
    except (UnknownGroupError, SubmitError) as error:
        raise fastpath.runtime_error(node, group_id, error) from None
    except QueryError as error:
        raise ApiError(400, str(error)) from None
    if not found["found"]:
        raise ApiError(
            404,
            f"key {key!r} not found in group {group_id}",
            extra={"key": key, "consistency": consistency},
        )
    return {
        "key": key,
        "value": found["value"],
        "instance": found["instance"],
        "consistency": consistency,
    }


async def put(
    group_id: int, key: str, data: dict[str, Any], header_request_id: str | None
) -> dict[str, Any]:
    """A PUT's answer, from its parsed body (the Django view and the raw ASGI route share it)."""
    fastpath.reject_unknown_fields(data, PUT_FIELDS)
    value = fastpath.require_value(data)
    request_id = fastpath.request_id_of(data, header_request_id)
    node = kv_group(group_id)
    outcome = await fastpath.submit(
        node, group_id, encode_command("put", key, value=value), request_id
    )
    return write_result(outcome)


async def delete_entry(request: HttpRequest, group_id: int, key: str) -> HttpResponse:
    request_id = fastpath.request_id_from(
        request,
        {"request_id": request.GET.get("request_id")} if "request_id" in request.GET else None,
    )
    node = kv_group(group_id)
    outcome = await fastpath.submit(node, group_id, encode_command("delete", key), request_id)
    return json_response(write_result(outcome))


#
# /api/kv/<g>/<key>/cas
#


class CasDocView(APIView):
    """Documentation only: ``cas_view`` serves the URL."""

    @extend_schema(
        operation_id="kv_cas",
        summary="Compare and set a key",
        description="Sets value only if the key's current value equals expected (null: the key "
        "must be absent). Either way the response carries the key's value right after the "
        "command was applied; a retry with the same request id gets that first answer again, "
        "with duplicate: true, not the value the key has now.",
        parameters=[*PATH_PARAMETERS, REQUEST_ID_HEADER],
        request=CasRequestSerializer,
        responses={
            200: CasResponseSerializer,
            **error_responses(*COMMAND_ERRORS),
        },
        tags=["kv"],
    )
    def post(self, request: Request, group_id: int, key: str) -> Response:  # pragma: no cover
        raise NotImplementedError


@fastpath.documented_by(CasDocView)
@fastpath.lean_view("POST")
async def cas_view(request: HttpRequest, group_id: int, key: str) -> HttpResponse:
    fastpath.check_key(key)
    data = fastpath.read_json_object(request)
    fastpath.reject_unknown_fields(data, CAS_FIELDS)
    if "expected" not in data:
        raise ApiError(400, "missing field 'expected' (null matches an absent key)")
    expected = data["expected"]
    if expected is not None:
        fastpath.check_value(expected, "expected")
    value = fastpath.require_value(data)
    request_id = fastpath.request_id_from(request, data)
    node = kv_group(group_id)
    command = encode_command("cas", key, expected=expected, value=value)
    outcome = await fastpath.submit(node, group_id, command, request_id)
    return json_response(write_result(outcome))
