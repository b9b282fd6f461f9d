"""Health and metrics endpoints (no auth: load balancers, process managers and Prometheus poll
them; they reveal no data, only the node's protocol state)."""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, HttpResponse, JsonResponse

from consensus import metrics
from consensus.health import readiness
from consensus.runtime import get_node


async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving HTTP."""
    node = get_node()
    failure = getattr(node, "failure", None)
    if failure is not None:  # the process exits in a moment; a supervisor restarts it
        body = {"status": "failed", "node_id": node.node_id, "error": f"storage failure: {failure}"}
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "node_id": node.node_id if node else None})


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when this node reaches a majority, knows a leader for every group and is caught up;
    503 with the reasons otherwise (see ``consensus.health``).

    Async on purpose: it runs on the event loop of the node, so it reads a consistent state."""
    node = get_node()
    state = readiness(node)
    body = {"node_id": node.node_id if node else None, **state.as_json()}
    if state.ready:
        return JsonResponse(body)
    body["error"] = "; ".join(state.reasons)
    response = JsonResponse(body, status=503, headers={"Retry-After": "1"})
    # An answer, not a server error: without this, Django's request logger wrote an ERROR line
    # for every probe of an unready node (every second, from a load balancer).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition (``consensus.metrics``), rendered on a worker thread: it takes
    milliseconds (the process collector reads ``/proc``), and the node's collector reads the
    runtime's state on the event loop by itself (``read_on_loop``)."""
    payload, content_type = await asyncio.to_thread(metrics.render)
    return HttpResponse(payload, content_type=content_type)
