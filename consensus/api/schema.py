"""OpenAPI (drf-spectacular) extensions of the API; imported by ``views`` so they are registered
before the schema is generated (not by ``authentication``: DRF loads that while initialising)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular how ``BearerTokenAuthentication`` looks in the OpenAPI schema."""

    target_class = "consensus.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from the cluster config's apiTokens.",
        }
