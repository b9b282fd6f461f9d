"""REST endpoints of the consensus app."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from consensus.runtime import get_node


def _no_runtime() -> JsonResponse:
    return JsonResponse(
        {"error": "this process runs no Paxos node (start it with manage.py runpaxos)"},
        status=503,
        headers={"Retry-After": "1"},
    )


async def status_view(request: HttpRequest) -> JsonResponse:
    """This node: id, and per group its role, leader, ballot, chosen and applied index; peers."""
    node = get_node()
    if node is None:
        return _no_runtime()
    return JsonResponse(node.status())
