"""URL configuration: admin, REST API under ``api/``, health (``healthz``, ``readyz``), Prometheus
``metrics`` and the live ``dashboard/``."""

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import URLPattern, URLResolver, include, path, re_path

from consensus.api.views import api_not_found, bad_request
from consensus.views import healthz, metrics_view, readyz

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("dashboard/", include("consensus.dashboard.urls")),
    path("api/kv/", include("kvstore.api.urls")),
    path("api/", include("consensus.api.urls")),
    # Unknown /api/ paths get a JSON 404, not Django's HTML page: keep it after the api/ includes.
    re_path(r"^api/(?P<path>.*)$", api_not_found, name="api-not-found"),
    # Static assets (admin CSS, the API docs' swagger-ui/redoc from drf-spectacular-sidecar) served
    # by the node itself from the apps' static folders: a node has no web server in front of it and
    # users' browsers may have no internet. Small files, rarely fetched: Django's view is enough.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}, name="static"),
]

# Requests Django refuses before any view (a Host not in ALLOWED_HOSTS...): JSON under /api/.
handler400 = bad_request
