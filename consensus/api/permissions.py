"""DRF permission of the API: a bearer token or a staff session (see ``authentication``)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from .authentication import TokenUser


class IsApiClient(BasePermission):
    """Token clients and staff users; a logged-in non-staff user is refused (403)."""

    message = "only API tokens and staff users may use the API"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if isinstance(user, TokenUser):
            return True
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
