"""Staff-only dashboard pages of this node: the page itself, its JSON snapshot (the polling
fallback when the websocket is down) and the submit form's endpoint."""

from __future__ import annotations

import json
import logging
import uuid

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from consensus.health import node_started
from consensus.request_ids import request_id_problem
from consensus.runtime import SubmitError, UnknownGroupError, get_node
from consensus.statemachine import validation_refusal

from .consumers import DASHBOARD_PATH
from .feed import get_feed
from .snapshot import build_snapshot

logger = logging.getLogger("consensus.dashboard")

MAX_COMMAND_CHARS = 64 * 1024
POLL_MS = 1000
EXAMPLE_COMMAND = '{"op": "put", "key": "greeting", "value": "hello"}'


@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The page. Synchronous on purpose: the admin chrome reads ``request.user`` lazily, which
    an async view may not do. The live data arrives over the websocket (or by polling)."""
    cluster = getattr(settings, "PAXOS_CLUSTER", None)
    node_id = cluster.my_id if cluster is not None else None
    config = {
        "node_id": node_id,
        "ws_path": "/" + DASHBOARD_PATH,
        "state_url": reverse("consensus-dashboard:state"),
        "submit_url": reverse("consensus-dashboard:submit"),
        "poll_ms": POLL_MS,
    }
    context = {
        **admin.site.each_context(request),
        "title": f"Node {node_id}: live cluster view" if node_id else "Live cluster view",
        "node_id": node_id,
        "group_ids": list(cluster.group_ids) if cluster is not None else [],
        "dashboard_config": config,
        "example_command": EXAMPLE_COMMAND,
    }
    return render(request, "consensus/dashboard.html", context)


async def _staff_or_error(request: HttpRequest) -> JsonResponse | None:
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        return JsonResponse({"error": "log in to the admin as a staff user"}, status=403)
    return None


def _no_node() -> JsonResponse:
    return JsonResponse(
        {"error": "this process runs no started Paxos node"},
        status=503,
        headers={"Retry-After": "1"},
    )


async def state(request: HttpRequest) -> JsonResponse:
    """``GET``: the same snapshot the websocket pushes."""
    denied = await _staff_or_error(request)
    if denied is not None:
        return denied
    node = get_node()
    if not node_started(node):
        return _no_node()
    return JsonResponse(await build_snapshot(node, get_feed()))


async def submit(request: HttpRequest) -> JsonResponse:
    """``POST`` (form-encoded, CSRF-protected): ``group``, ``command``, optional ``request_id``.
    Commits the command through this node like the REST API does and returns its result."""
    if request.method != "POST":
        return JsonResponse({"error": "use POST"}, status=405, headers={"Allow": "POST"})
    denied = await _staff_or_error(request)
    if denied is not None:
        return denied
    try:
        group_id = int(request.POST.get("group", ""))
    except ValueError:
        return JsonResponse({"error": "group must be a group number"}, status=400)
    command = request.POST.get("command", "")
    request_id = request.POST.get("request_id", "").strip() or uuid.uuid4().hex
    if not command:
        return JsonResponse({"error": "the command is empty"}, status=400)
    if len(command) > MAX_COMMAND_CHARS:
        return JsonResponse(
            {"error": f"commands are at most {MAX_COMMAND_CHARS} characters"}, status=413
        )
    problem = request_id_problem(request_id)
    if problem is None and request_id.startswith("paxos:"):
        problem = "request ids starting with paxos: are reserved"
    if problem is not None:
        return JsonResponse({"error": problem}, status=400)
    node = get_node()
    if not node_started(node):
        return _no_node()
    machine = node.machines.get(group_id)
    if machine is not None and (refusal := validation_refusal(machine, group_id, command)):
        status, reason = refusal
        return JsonResponse({"error": reason}, status=status)
    user = await request.auser()
    try:
        outcome = await node.submit(group_id, command, request_id)
    except UnknownGroupError:
        return JsonResponse({"error": f"unknown group {group_id}"}, status=404)
    except SubmitError as error:
        logger.warning(
            "node %s group %s: dashboard command request_id=%s by %s failed: %s",
            node.node_id,
            group_id,
            request_id,
            user.get_username(),
            error,
        )
        if error.http_status != 503:  # the command itself is wrong: retrying will not help
            return JsonResponse({"error": str(error)}, status=error.http_status)
        return JsonResponse(
            {"error": str(error)},
            status=503,
            headers={"Retry-After": str(max(1, round(error.retry_after)))},
        )
    logger.info(
        "node %s group %s: dashboard command request_id=%s by %s chosen at instance %s%s",
        node.node_id,
        group_id,
        outcome.request_id,
        user.get_username(),
        outcome.instance,
        " (duplicate)" if outcome.duplicate else "",
    )
    try:
        result = json.loads(json.dumps(outcome.result))
    except (TypeError, ValueError):
        result = repr(outcome.result)
    return JsonResponse(
        {
            "group_id": group_id,
            "instance": outcome.instance,
            "request_id": outcome.request_id,
            "result": result,
            "duplicate": outcome.duplicate,
        }
    )
