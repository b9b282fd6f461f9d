from django.urls import path

from . import views

app_name = "consensus-api"

urlpatterns = [
    path("status/", views.status_view, name="status"),
]
