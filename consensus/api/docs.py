"""The API's docs pages (Swagger UI and ReDoc), which contact no host but the node.

drf-spectacular-sidecar serves their scripts and styles from the node, but the pages still
reached out on their own: ReDoc's template links Google Fonts, ReDoc's menu shows its logo from
``cdn.redoc.ly``, and Swagger UI asks ``validator.swagger.io`` for a validity badge (sending it
the schema's URL) whenever that URL is not ``localhost``. A node's docs page should work the same
on an air-gapped network and tell no third party where the node is. So the ReDoc template is
overridden without the fonts (``templates/drf_spectacular/redoc.html``), Swagger UI's validator is
off (``SPECTACULAR_SETTINGS["SWAGGER_UI_SETTINGS"]``), and both pages carry a
Content-Security-Policy that lets the browser load from the node only: anything a later version
adds from elsewhere is refused by the browser instead of leaking.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        # Both pages start their UI from an inline script; ReDoc builds its search worker from
        # a blob: URL and inlines small images as data: URLs.
        "script-src 'self' 'unsafe-inline' blob:",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    )
)


class LocalAssetsOnly:
    """Adds ``DOCS_CONTENT_SECURITY_POLICY`` to a docs page's response (in ``finalize_response``:
    drf-spectacular keeps its pages out of the schema with a decorator on their ``get``, which
    an override of ``get`` would lose)."""

    def finalize_response(
        self, request: Any, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerView(LocalAssetsOnly, SpectacularSwaggerView):
    """Swagger UI at ``/api/docs/``."""


class RedocView(LocalAssetsOnly, SpectacularRedocView):
    """ReDoc at ``/api/redoc/``."""
