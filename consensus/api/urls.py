from django.urls import path

from . import views

app_name = "consensus-api"

urlpatterns = [
    path("status/", views.status_view, name="status"),
    path("groups/<int:group_id>/commands/", views.submit_command_view, name="group-commands"),
]
