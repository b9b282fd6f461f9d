"""System checks: configuration mistakes are reported by ``manage.py check`` and at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register()
def check_state_machines(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """consensus.E001: a group names a state machine nobody registered."""
    from .registry import registry

    cluster = getattr(settings, "PAXOS_CLUSTER", None)
    specs = list(cluster.groups) if cluster is not None else []
    errors = []
    for spec in specs:
        if not registry.is_registered(spec.state_machine):
            errors.append(
                Error(
                    f"group {spec.group_id} runs state machine {spec.state_machine!r}, "
                    "which is not registered",
                    hint="register it with @consensus.registry.register(...) in an installed "
                    "app's statemachines.py (an app of your own: list it in PAXOS_EXTRA_APPS "
                    "for every node and every manage.py command); registered: "
                    f"{', '.join(registry.names())}",
                    id="consensus.E001",
                )
            )
    default = getattr(settings, "PAXOS_DEFAULT_STATE_MACHINE", "kv")
    if not registry.is_registered(default):
        errors.append(
            Error(
                f"PAXOS_DEFAULT_STATE_MACHINE names {default!r}, which is not registered",
                id="consensus.E002",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_cluster_config(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """consensus.W001: the node's config is valid but probably a mistake (the README's example
    secret, no API token); ``runpaxos`` logs the same lines at start. Deploy-only, so that every
    management command does not repeat them."""
    from .config import startup_warnings

    cluster = getattr(settings, "PAXOS_CLUSTER", None)
    if cluster is None:
        return []
    return [Warning(message, id="consensus.W001") for message in startup_warnings(cluster)]


@register(Tags.admin)
def check_replicated_models_in_admin(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """consensus.W002: a model of a state machine's app is in the admin with a ``ModelAdmin``
    that can change it: a staff user's edit would change this node's copy of the replicated
    state only, and the nodes would disagree for good."""
    from django.contrib import admin

    from .admin import ReadOnlyAdmin
    from .registry import machine_apps

    labels = machine_apps()
    return [
        Warning(
            f"{model._meta.label} is in the admin with {type(model_admin).__name__}, which lets "
            "staff change this node's copy of a state machine's replicated state (the other "
            "nodes keep theirs)",
            hint="register it with consensus.admin.ReadOnlyAdmin, as kvstore/admin.py does: "
            "writes go through Paxos (the API, the client or the dashboard)",
            obj=model,
            id="consensus.W002",
        )
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in labels and not isinstance(model_admin, ReadOnlyAdmin)
    ]
