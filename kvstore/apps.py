"""App config of ``kvstore``; its state machine is found by ``consensus``'s discovery."""

from django.apps import AppConfig


class KvstoreConfig(AppConfig):
    """The KV store app. ``consensus`` never imports it: discovery finds ``statemachines.py``."""

    name = "kvstore"
    verbose_name = "Key-value store"
    default_auto_field = "django.db.models.BigAutoField"
