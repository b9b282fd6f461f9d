"""Who may call the REST API: a bearer token from the config's ``apiTokens``, or a staff session.

Policy (README "REST API"): every endpoint under ``/api/`` needs one of the two, reads included,
because the commit log and the KV store are the users' data; only the OpenAPI schema and its docs
pages (``/api/schema/``, ``/api/docs/``, ``/api/redoc/``) and ``/healthz`` are open.

- ``Authorization: Bearer <token>``: compared with every configured token using
  ``hmac.compare_digest`` over bytes, all of them every time, so neither the position nor the
  prefix of a match leaks through timing. A present but wrong header is a 401 even when the
  browser also has a session: a script with a stale token should fail loudly.
- A logged-in staff user's session (the admin login): CSRF applies to unsafe methods exactly as
  in DRF's ``SessionAuthentication``. A logged-in non-staff user gets 403.

The same rules back the lean async views (``authenticate_request``) and the DRF views
(``BearerTokenAuthentication`` + ``SessionAuthentication`` + ``permissions.IsApiClient``).
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from rest_framework import authentication, exceptions

from .exceptions import AUTHENTICATION_REQUIRED, ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_CHALLENGE = 'Bearer realm="api"'


def api_tokens() -> tuple[str, ...]:
    """Tokens accepted now: the node's ``apiTokens`` plus ``settings.PAXOS_API_TOKENS`` (extra
    tokens for a development server that runs without a cluster config)."""
    cluster = getattr(settings, "PAXOS_CLUSTER", None)
    configured = tuple(cluster.api_tokens) if cluster is not None else ()
    return configured + tuple(getattr(settings, "PAXOS_API_TOKENS", ()))


def token_is_valid(token: str) -> bool:
    """Constant-time membership test; bytes, because ``compare_digest`` refuses non-ASCII str."""
    candidate = token.encode("utf-8", "surrogateescape")
    matches = [hmac.compare_digest(candidate, known.encode()) for known in api_tokens()]
    return any(matches)


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other shape."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class TokenUser:
    """``request.user`` of a token-authenticated DRF request: authenticated, not staff, and
    without a database row (tokens come from the config file, not the user table)."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None
    id = None
    username = "api-token"

    def __str__(self) -> str:
        return self.username


class _CsrfCheck(CsrfViewMiddleware):
    """The middleware's checks, returning the failure reason instead of a 403 page (DRF's
    ``CSRFCheck``)."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    """DRF's ``SessionAuthentication.enforce_csrf``: run the middleware's checks by hand (the
    lean views are ``csrf_exempt`` so token clients need no cookie)."""

    def no_response(_request: HttpRequest) -> None:
        return None

    check = _CsrfCheck(no_response)  # type: ignore[arg-type]
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    return str(reason) if reason else None


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": BEARER_CHALLENGE})


def check_bearer(header: str) -> None:
    """An ``Authorization`` header's token must be one of apiTokens, else ``ApiError`` 401."""
    token = bearer_token(header)
    if token is None:
        raise _unauthorized('use "Authorization: Bearer <token>" with a token from apiTokens')
    if not token_is_valid(token):
        raise _unauthorized("wrong API token")


async def authenticate_request(request: HttpRequest) -> str:
    """The lean views' check; returns who called (``"token"`` or the staff username).

    Raises ``ApiError`` 401 (no or wrong credentials) or 403 (not staff, or CSRF failed).
    The session is only touched when there is no Authorization header, so token clients never
    pay for a session or user lookup.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        check_bearer(header)
        return "token"
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else None
    if user is None or not user.is_authenticated:
        raise _unauthorized(AUTHENTICATION_REQUIRED)
    if not (user.is_active and user.is_staff):
        raise ApiError(403, "only staff users may use the API with a session")
    if request.method not in SAFE_METHODS:
        reason = _csrf_failure(request)
        if reason is not None:
            raise ApiError(403, f"CSRF failed: {reason}")
    return user.get_username()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """DRF side of the bearer token rule (see the module docstring)."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[TokenUser, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        token = bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed(
                'use "Authorization: Bearer <token>" with a token from apiTokens'
            )
        if not token_is_valid(token):
            raise exceptions.AuthenticationFailed("wrong API token")
        return TokenUser(), token

    def authenticate_header(self, request: Any) -> str:
        return BEARER_CHALLENGE
