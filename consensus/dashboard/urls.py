from django.urls import path

from . import views

app_name = "consensus-dashboard"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("state.json", views.state, name="state"),
    path("submit/", views.submit, name="submit"),
]
