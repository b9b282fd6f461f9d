"""Health endpoints (no auth: load balancers and process managers poll them)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from consensus.runtime import get_node


async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving HTTP."""
    node = get_node()
    return JsonResponse({"status": "ok", "node_id": node.node_id if node else None})
