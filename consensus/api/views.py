"""REST endpoints of the consensus app (DESIGN.md §5).

Two stacks, one interface:
- the hot endpoint ``POST /api/groups/<g>/commands/`` is a lean async view (``fastpath``);
- everything else (groups, the commit log, nodes, status) is DRF: cheap enough for how often it
  is called, and it gets validation, pagination and the schema for free.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.core.exceptions import DisallowedHost
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consensus import __version__, wire_version
from consensus.health import NodeUnavailableError, read_on_loop
from consensus.models import Group, Instance, Node
from consensus.runtime import SubmitError, UnknownGroupError, get_node
from consensus.statemachine import QueryError, portable_result

from . import fastpath, schema  # noqa: F401  (schema registers the bearer auth extension)
from .converters import GROUP_ID_REGEX
from .exceptions import ApiError, error_response, json_response
from .reads import reads_of
from .serializers import (
    CommandRequestSerializer,
    CommandResponseSerializer,
    DecimalIntegerField,
    ErrorSerializer,
    GroupSerializer,
    LogPageSerializer,
    NodeSerializer,
    QueryRequestSerializer,
    QueryResponseSerializer,
    StateCheckResponseSerializer,
    StatusSerializer,
)

logger = logging.getLogger("consensus.api")

DEFAULT_LOG_LIMIT = 100
MAX_LOG_LIMIT = 1000
MAX_LOG_PAGE_CHARS = 1024 * 1024
"""A page of the log ends before the entry that would take its values past this many characters
(it holds one entry at least; ``next`` goes on from there). Without it a page of 1,000 entries of
up to 1 MiB each was read, rendered and sent whole: a review measured 10 ms per MB during which
the node's event loop waited for the GIL, so one such request could outlast an election
timeout."""


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the ``{"error": ...}`` responses an endpoint can give."""
    meaning = {
        400: "Bad input (invalid JSON, missing field, wrong type).",
        401: "No or wrong credentials.",
        403: "Not allowed (not staff, or CSRF failed for a session).",
        404: "Unknown group or key.",
        405: "Method not allowed.",
        409: "The request id was already used for a different command.",
        413: "Body, key, value or command larger than the limit.",
        503: "No leader or no quorum within the request timeout (the outcome is unknown: retry "
        "with the request id the answer names); see Retry-After.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=meaning[code]) for code in codes}


GROUP_ID = OpenApiParameter("group_id", OpenApiTypes.INT, OpenApiParameter.PATH)
COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 503)


#
# Commands (lean)
#


class CommandDocView(APIView):
    """Documentation only: ``commands_view`` serves the URL (see ``fastpath.documented_by``)."""

    @extend_schema(
        operation_id="groups_commands_create",
        summary="Submit a command to a group",
        description="The command is chosen into the group's log by multi-Paxos and applied on "
        "every node; the node you called returns the state machine's result. Any node "
        "accepts commands (followers forward to the leader). Retrying with the same "
        "request_id, on any node, returns the first result and applies nothing twice.",
        parameters=[GROUP_ID],
        request=CommandRequestSerializer,
        responses={200: CommandResponseSerializer, **error_responses(*COMMAND_ERRORS)},
        tags=["commands"],
    )
    def post(self, request: Request, group_id: int) -> Response:  # pragma: no cover
        raise NotImplementedError


COMMAND_FIELDS = frozenset({"command", "request_id"})


@fastpath.documented_by(CommandDocView)
@fastpath.lean_view("POST")
async def commands_view(request: HttpRequest, group_id: int) -> HttpResponse:
    """``POST /api/groups/<g>/commands/`` ``{"command": str, "request_id": str?}``."""
    data = fastpath.read_json_object(request)
    fastpath.reject_unknown_fields(data, COMMAND_FIELDS)
    command = fastpath.require_string(data, "command")
    request_id = fastpath.request_id_from(request, data)
    node = fastpath.require_node()
    fastpath.check_for_machine(node, group_id, command)  # an unknown group: submit says so
    outcome = await fastpath.submit(node, group_id, command, request_id)
    return json_response(
        {
            "instance": outcome.instance,
            "request_id": outcome.request_id,
            "result": outcome.result,
            "duplicate": outcome.duplicate,
        }
    )


class QueryDocView(APIView):
    """Documentation only: ``query_view`` serves the URL (see ``fastpath.documented_by``)."""

    @extend_schema(
        operation_id="groups_query_create",
        summary="Query a group's state machine",
        description="Runs the state machine's query() on this node, after a read barrier "
        "(linearizable, the default) or at once on its applied state (local). Nothing goes "
        "into the log.",
        parameters=[GROUP_ID],
        request=QueryRequestSerializer,
        responses={
            200: QueryResponseSerializer,
            **error_responses(400, 401, 403, 404, 405, 413, 503),
        },
        tags=["commands"],
    )
    def post(self, request: Request, group_id: int) -> Response:  # pragma: no cover
        raise NotImplementedError


QUERY_FIELDS = frozenset({"query", "consistency"})


@fastpath.documented_by(QueryDocView)
@fastpath.lean_view("POST")
async def query_view(request: HttpRequest, group_id: int) -> HttpResponse:
    """``POST /api/groups/<g>/query/`` ``{"query": str, "consistency": str?}``: a custom state
    machine's reads (``query()``) over REST, as the client stream offers them."""
    data = fastpath.read_json_object(request)
    fastpath.reject_unknown_fields(data, QUERY_FIELDS)
    query = fastpath.require_string(data, "query")
    consistency = data.get("consistency", "linearizable")
    if consistency not in ("linearizable", "local"):
        raise ApiError(400, f"consistency must be linearizable or local, not {consistency!r}")
    node = fastpath.require_node()
    fastpath.require_group(node, group_id)
    fastpath.check_for_machine(node, group_id, query)
    try:
        result = await reads_of(node).query(
            group_id, query, linearizable=consistency == "linearizable"
        )
    except (UnknownGroupError, SubmitError) as error:
        raise fastpath.runtime_error(node, group_id, error) from None
    except QueryError as error:
        raise fastpath.query_error(node, group_id, query, error) from None
    answer, _ = portable_result(result)  # as a command's result: JSON or an error, never str()
    return json_response({"result": answer, "consistency": consistency})


class StateCheckDocView(APIView):
    """Documentation only: ``state_check_view`` serves the URL (see ``fastpath.documented_by``)."""

    @extend_schema(
        operation_id="groups_state_check_create",
        summary="Compare the nodes' state of a group now",
        description="Puts a state check in the group's log: every node digests its state "
        "machine's state at that place, and the window of results it ends is compared between "
        "the nodes, as every few minutes (README 'Nodes whose state machines differ'). Answers "
        "how each peer's digest compares with this node's, after at most 2 s.",
        parameters=[GROUP_ID],
        request=None,
        responses={
            200: StateCheckResponseSerializer,
            **error_responses(401, 403, 404, 405, 503),
        },
        tags=["groups"],
    )
    def post(self, request: Request, group_id: int) -> Response:  # pragma: no cover
        raise NotImplementedError


@fastpath.documented_by(StateCheckDocView)
@fastpath.lean_view("POST")
async def state_check_view(request: HttpRequest, group_id: int) -> HttpResponse:
    """``POST /api/groups/<g>/state-check/``: ``runtime.state_checks.StateChecks.check``."""
    node = fastpath.require_node()
    fastpath.require_group(node, group_id)
    try:
        return json_response(await node.state_checks.check(group_id))
    except (UnknownGroupError, SubmitError) as error:
        raise fastpath.runtime_error(node, group_id, error) from None


#
# Groups and the commit log (DRF)
#


def live_groups() -> dict[int, dict[str, Any]]:
    node = get_node()
    if node is None:
        return {}
    return read_on_loop(
        node, lambda live: {g: vars(live.group_status(g)) for g in list(live.replicas)}
    )


@extend_schema(tags=["groups"], responses={200: GroupSerializer, **error_responses(401, 403, 404)})
@extend_schema(parameters=[GROUP_ID], methods=["GET"])
class GroupViewSet(viewsets.ReadOnlyModelViewSet):
    """The groups this node hosts, with live leader/role/ballot when the node runs."""

    queryset = Group.objects.select_related("applied_index").order_by("group_id")
    serializer_class = GroupSerializer
    lookup_field = "group_id"
    lookup_value_regex = GROUP_ID_REGEX  # longer is no endpoint, not a 500
    pagination_class = None

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "live": live_groups()}

    def get_object(self) -> Group:
        try:
            return super().get_object()
        except Http404:  # the same words as every other path with a group in it
            raise unknown_group_error(int(self.kwargs["group_id"])) from None


def unknown_group_error(group_id: int) -> ApiError:
    node = get_node()
    if node is None:  # a development server without a cluster
        return ApiError(404, f"unknown group {group_id}")
    return fastpath.unknown_group(node, group_id)


class LogQuerySerializer(serializers.Serializer):
    after = DecimalIntegerField(
        min_value=0, default=0, help_text="Return instances after this one (default 0)."
    )
    limit = DecimalIntegerField(
        min_value=1,
        max_value=MAX_LOG_LIMIT,
        default=DEFAULT_LOG_LIMIT,
        help_text=f"At most this many entries (1..{MAX_LOG_LIMIT}, default {DEFAULT_LOG_LIMIT}).",
    )


class GroupLogView(APIView):
    """``GET /api/groups/<g>/log/?after=n&limit=m``: the chosen log in instance order.

    Keyset pagination on the instance number: ``next`` continues after the last entry returned,
    so a client can follow the log as it grows without skipping or repeating entries.
    """

    @extend_schema(
        operation_id="groups_log_list",
        summary="The commit log of a group (chosen instances, paginated)",
        parameters=[GROUP_ID, LogQuerySerializer],
        responses={200: LogPageSerializer, **error_responses(400, 401, 403, 404)},
        tags=["groups"],
    )
    def get(self, request: Request, group_id: int) -> Response:
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        group = Group.objects.filter(group_id=group_id).first()
        if group is None:
            raise unknown_group_error(group_id)
        page, more = _log_page(group_id, after, limit, group.chosen_upto)
        next_url = None
        if more:
            next_url = request.build_absolute_uri(
                f"{request.path}?after={page[-1].instance}&limit={limit}"
            )
        live = live_groups().get(group_id)
        chosen_upto = max(group.chosen_upto, int(live["chosen_upto"]) if live else 0)
        data = {
            "group_id": group_id,
            "after": after,
            "limit": limit,
            "chosen_upto": chosen_upto,
            "next": next_url,
            "results": page,
        }
        return Response(LogPageSerializer(data, context={"request": request}).data)


def _log_page(group_id: int, after: int, limit: int, prefix: int) -> tuple[list[Instance], bool]:
    """The chosen entries after ``after`` for one page: at most ``limit`` of them and
    ``MAX_LOG_PAGE_CHARS`` of values (one entry at least), and whether more follow.

    Only the contiguous chosen prefix ``1..prefix`` (``Group.chosen_upto``, read before this and
    written in the transaction that marks its instances chosen): an instance chosen above a gap
    is not served until the gap is filled, or a client that goes on after the last entry it got
    (``next``) would skip the gap's instances for good. Below ``prefix`` nothing changes any more,
    so the two queries (the sizes first, so that no value past the page is loaded, then the
    page's rows) see the same rows."""
    chosen: QuerySet[Instance] = Instance.objects.filter(
        group_id=group_id, chosen=True, instance__gt=after, instance__lte=prefix
    ).order_by("instance")
    sizes = chosen.annotate(size=Length("value")).values_list("instance", "size")[: limit + 1]
    last, total, more = None, 0, False
    for count, (instance, size) in enumerate(sizes.iterator()):
        if count == limit or (last is not None and total + size > MAX_LOG_PAGE_CHARS):
            more = True
            break
        last, total = instance, total + size
    return (list(chosen.filter(instance__lte=last)) if last is not None else []), more


#
# Nodes and status (DRF)
#


@extend_schema(tags=["nodes"], responses={200: NodeSerializer, **error_responses(401, 403, 404)})
@extend_schema(
    parameters=[OpenApiParameter("node_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
    methods=["GET"],
)
class NodeViewSet(viewsets.ReadOnlyModelViewSet):
    """The members of the cluster (from the config), and whether this node is linked to each."""

    queryset = Node.objects.order_by("node_id")
    serializer_class = NodeSerializer
    lookup_field = "node_id"
    lookup_value_regex = GROUP_ID_REGEX
    pagination_class = None

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        node = get_node()
        if node is not None:
            transport = read_on_loop(node, lambda live: live.status()).get("peers") or {}
            peers = transport.get("peers", []) if isinstance(transport, dict) else []
            context["my_id"] = node.node_id
            context["peers"] = {peer["node_id"]: peer for peer in peers}
        return context


class ReleaseStatusSerializer(StatusSerializer):
    """``StatusSerializer`` plus the release the node runs (what ``StatusView`` answers)."""

    version = serializers.CharField(help_text="This node's release (every node runs the same).")
    wire_version = serializers.IntegerField(help_text="The peer wire format it speaks.")


class StatusView(APIView):
    """``GET /api/status/``: this node's id, release and wire format, per group
    role/leader/ballot/chosen/applied, peers."""

    @extend_schema(
        operation_id="status_retrieve",
        summary="This node's status",
        responses={200: ReleaseStatusSerializer, **error_responses(401, 403, 503)},
        tags=["nodes"],
    )
    def get(self, request: Request) -> Response:
        node = fastpath.require_node()
        try:  # DRF runs this on a worker thread: snapshot the state on the node's event loop
            status = read_on_loop(node, lambda live: live.status())
        except NodeUnavailableError as error:
            raise ApiError(503, str(error), retry_after=1) from error
        return Response({**status, "version": __version__, "wire_version": wire_version()})


#
# Anything else under /api/
#


KV_KEY_WITH_SLASH = re.compile(r"^/api/kv/\d+/[^/]+/.+")
"""A KV path with more after the key than ``/cas``: a key with a slash in it."""
MAX_ECHOED_PATH = 200
"""Characters of an unknown path quoted back in the 404: a path can be 64 KiB long."""


@csrf_exempt  # nothing to protect, and a write to a mistyped path must get this 404, not a 403
async def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """JSON 404 for unknown API paths (Django's default is an HTML page), whatever the method;
    since this catch-all stops ``APPEND_SLASH`` from redirecting, say so when the path with a
    slash exists."""
    shown = _shortened(request.path)
    message = f"no API endpoint at {shown}"
    if KV_KEY_WITH_SLASH.match(request.path):  # %2F arrives decoded: the key looks like a path
        return error_response(404, f"{message}: KV keys cannot contain '/' (nor %2F)")
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            message += f" (did you mean {shown}/ ?)"
    return error_response(404, message)


def _shortened(path: str) -> str:
    return path if len(path) <= MAX_ECHOED_PATH else path[:MAX_ECHOED_PATH] + "..."


_DJANGO_HOST_ADVICE = " to ALLOWED_HOSTS."


def _host_refusal(exception: DisallowedHost) -> str:
    """Django's words for a refused ``Host`` (at most 200 characters of them), with its advice
    to "add 'x' to ALLOWED_HOSTS" pointed at the environment variable a node reads instead."""
    text, advice = str(exception), ""
    if text.endswith(_DJANGO_HOST_ADVICE):
        text = text[: -len(_DJANGO_HOST_ADVICE)]
        advice = " to PAXOS_ALLOWED_HOSTS (environment, comma separated)."
    return (text if len(text) <= 200 else text[:200] + "...") + advice


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: what Django answers a request it refuses before any view (a ``Host`` not
    in ``ALLOWED_HOSTS``, a body over Django's limits...). The API answers JSON, like every
    other API error; other paths get Django's page. A refused ``Host`` is logged here, as one
    line: settings.LOGGING silences Django's own ERROR with a traceback, which a scanner
    sending a wrong ``Host`` would repeat per request. Both name ``PAXOS_ALLOWED_HOSTS``, the
    setting users have (``ALLOWED_HOSTS`` is built from it in settings.py)."""
    if isinstance(exception, DisallowedHost):
        logger.warning(
            "%s %s refused: %s", request.method, _shortened(request.path), _host_refusal(exception)
        )
        message = "the Host header names no host this node serves (PAXOS_ALLOWED_HOSTS)"
    else:
        message = "bad request"
    if request.path.startswith("/api/"):
        return error_response(400, message)
    return defaults.bad_request(request, exception)


__all__ = [
    "CommandDocView",
    "GroupLogView",
    "GroupViewSet",
    "NodeViewSet",
    "StatusView",
    "api_not_found",
    "bad_request",
    "commands_view",
    "state_check_view",
]
