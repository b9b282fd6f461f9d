"""URLs of the consensus API, mounted at ``/api/`` (the KV store's are at ``/api/kv/``)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from . import docs, views

app_name = "consensus-api"

router = SimpleRouter()
router.include_format_suffixes = False

#
# Groups
#
router.register("groups", views.GroupViewSet, basename="group")

#
# Nodes
#
router.register("nodes", views.NodeViewSet, basename="node")

urlpatterns = [
    path("status/", views.StatusView.as_view(), name="status"),
    path("groups/<group:group_id>/commands/", views.commands_view, name="group-commands"),
    path("groups/<group:group_id>/query/", views.query_view, name="group-query"),
    path("groups/<group:group_id>/log/", views.GroupLogView.as_view(), name="group-log"),
    path(
        "groups/<group:group_id>/state-check/",
        views.state_check_view,
        name="group-state-check",
    ),
    path("", include(router.urls)),
    # The OpenAPI schema and its docs pages: open to everyone (they hold no data), assets served
    # locally by drf-spectacular-sidecar, nothing from elsewhere (docs.py: they work offline).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs.SwaggerView.as_view(url_name="consensus-api:schema"), name="docs"),
    path("redoc/", docs.RedocView.as_view(url_name="consensus-api:schema"), name="redoc"),
]
