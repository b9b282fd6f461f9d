"""Error bodies of the REST API: always JSON ``{"error": "<one line>"}`` with the right status.

Both paths use this module: the lean async views raise ``ApiError`` (caught by ``lean_view``) and
the DRF views go through ``exception_handler`` (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``), so a
client sees one error shape whichever stack served it (DESIGN.md §5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from django.http import HttpResponse

JSON_CONTENT_TYPE = "application/json"
AUTHENTICATION_REQUIRED = (
    'authentication required: send "Authorization: Bearer <token>" '
    "(a token from the config's apiTokens) or log in as a staff user"
)


class ApiError(Exception):
    """An expected failure of a request; becomes ``{"error": message}`` with ``status``.

    ``retry_after`` (seconds) adds a ``Retry-After`` header: 503s always carry one, so clients
    (ours included) know when trying again makes sense.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> HttpResponse:
        return error_response(
            self.status_code,
            self.message,
            retry_after=self.retry_after,
            headers=self.headers,
            extra=self.extra,
        )

    def parts(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON body and headers of the error response (for the raw ASGI routes)."""
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = retry_after_header(self.retry_after)
        return self.status_code, {"error": self.message, **self.extra}, headers


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so a client never retries too early."""
    return str(max(1, math.ceil(seconds)))


def json_response(
    data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    """A JSON response without ``JsonResponse``'s encoder detour (orjson is ~10x faster)."""
    return HttpResponse(
        json_bytes(data), status=status_code, content_type=JSON_CONTENT_TYPE, headers=headers
    )


def json_bytes(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # Results of user state machines may hold types orjson refuses (big ints, sets...).
        import json

        return json.dumps(data, default=str).encode()


def error_response(
    status_code: int,
    message: str,
    *,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> HttpResponse:
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = retry_after_header(retry_after)
    return json_response({"error": message, **(extra or {})}, status_code, all_headers)


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    """DRF's nested error details as ``field: message`` lines."""
    if isinstance(detail, Mapping):
        lines: list[str] = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix
            lines.extend(_flatten(value, name))
        return lines
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    text = str(detail)
    return [f"{prefix}: {text}" if prefix else text]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """DRF's handler, reshaped to ``{"error": ...}`` (validation details stay in ``fields``).

    DRF is imported here, not at module level: ``authentication`` imports this module while DRF
    is still loading its settings (an import cycle otherwise).
    """
    from rest_framework import exceptions as drf_exceptions
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApiError):
        headers = dict(exc.headers)
        if exc.retry_after is not None:
            headers["Retry-After"] = retry_after_header(exc.retry_after)
        return Response(
            {"error": exc.message, **exc.extra}, status=exc.status_code, headers=headers
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        response.data = {"error": AUTHENTICATION_REQUIRED}
    elif isinstance(exc, drf_exceptions.ValidationError):
        response.data = {"error": "; ".join(_flatten(detail)) or "invalid input", "fields": detail}
    elif isinstance(detail, Mapping) and "detail" in detail:
        response.data = {"error": str(detail["detail"])}
    else:
        response.data = {"error": "; ".join(_flatten(detail))}
    if response.status_code == 503:
        response.headers.setdefault("Retry-After", "1")
    return response
