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


class ConsensusConfig(SimpleConsensusConfig):
    """The default: also imports every installed app's ``statemachines.py``."""

    default = True

    def ready(self) -> None:
        super().ready()
        from .registry import autodiscover

        autodiscover()
