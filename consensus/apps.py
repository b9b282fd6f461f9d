"""App config of ``consensus``: wiring only, never queries (Django contrib's ``ready()`` rule)."""

from django.apps import AppConfig


class SimpleConsensusConfig(AppConfig):
    """The replication service without state machine discovery (like ``SimpleAdminConfig``)."""

    name = "consensus"
    verbose_name = "Consensus (multi-Paxos)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .api import converters

        converters.register()  # the <group:...> of the URLconfs, loaded after this
        from django.core.signals import request_started

        from .storage.reconnect import close_hung_up_at_request

        # Django's own look at a request's connections (close_old_connections) cannot see one
        # its PostgreSQL server closed while it was idle: the request would fail on it.
        request_started.connect(close_hung_up_at_request, dispatch_uid="consensus-hung-up")


class ConsensusConfig(SimpleConsensusConfig):
    """The default: also imports every installed app's ``statemachines.py``."""

    default = True

    def ready(self) -> None:
        super().ready()
        from .registry import autodiscover

        autodiscover()
