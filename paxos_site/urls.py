"""URL configuration: admin, REST API under ``api/``, health under ``healthz``."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from consensus.views import healthz

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/", include("consensus.api.urls")),
]
