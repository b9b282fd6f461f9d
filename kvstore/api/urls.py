"""URLs of the KV API, mounted at ``/api/kv/`` (keys cannot contain ``/``)."""

from django.urls import path

from . import views

app_name = "kvstore-api"

urlpatterns = [
    path("<group:group_id>/<str:key>/cas", views.cas_view, name="entry-cas"),
    path("<group:group_id>/<str:key>", views.entry_view, name="entry"),
]
