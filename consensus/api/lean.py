"""A lean ASGI front for the hot endpoints: the same views, without Django's middleware stack.

Under daphne every Django middleware written in the classic style (sessions, CSRF, auth,
messages...) costs a hop to a worker thread and back, per request, in both directions; together
with the ``request_started``/``request_finished`` signals that is most of a command's latency
(PERFORMANCE.md: 1.5-2.5 ms of CPU for a view that does nothing). The hot endpoints (commands
and the KV store) authenticate bearer tokens themselves and need none of that middleware, so
requests for them that carry an ``Authorization`` header and no cookie are served here: Django
builds the request, resolves the URL and runs the very same view; nothing else runs.

Anything else (a browser with a session cookie, the admin, the dashboard, DRF endpoints) goes
to the full Django application, so behaviour is identical and only the cost differs.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse
from django.urls import get_resolver

from .exceptions import error_response

logger = logging.getLogger("consensus.api")

HOT_PATHS = re.compile(r"^/api/(kv/\d+/|groups/\d+/commands/$)")

Scope = dict[str, Any]


class LeanRouter:
    """ASGI app: hot bearer-token requests to ``LeanHandler``, everything else to Django."""

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.lean = LeanHandler()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _is_lean(scope):
            await self.lean(scope, receive, send)
        else:
            await self.django_app(scope, receive, send)


def _is_lean(scope: Scope) -> bool:
    if not HOT_PATHS.match(scope.get("path", "")):
        return False
    has_token = False
    for name, _value in scope.get("headers", ()):
        if name == b"cookie":
            return False
        if name == b"authorization":
            has_token = True
    return has_token


class LeanHandler(ASGIHandler):
    """Django's ASGI handler minus middleware and request signals."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = self._get_response_async

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        limit = int(getattr(settings, "PAXOS_MAX_BODY_BYTES", 1024 * 1024))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self.send_response(
                    error_response(413, f"request body is larger than {limit} bytes"), send
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        request, error = self.create_request(scope, io.BytesIO(b"".join(chunks)))
        if request is None:
            await self.send_response(error, send)
            return
        await self.send_response(await self._respond(request), send)

    async def _respond(self, request: HttpRequest) -> HttpResponse:
        try:
            match = get_resolver().resolve(request.path_info)
        except Exception:  # noqa: BLE001 - Resolver404 and friends: answer like the API does
            return error_response(404, f"no endpoint at {request.path_info}")
        request.resolver_match = match
        view = match.func
        if not iscoroutinefunction(view):
            view = sync_to_async(view)
        try:
            return await view(request, *match.args, **match.kwargs)
        except Exception:  # noqa: BLE001 - never an HTML 500 page on the API
            logger.exception("lean view %s failed", match.view_name)
            return error_response(500, "internal error")
