"""Installed apps whose models no migration describes yet: ``runpaxos`` refuses to start with them.

``runpaxos`` migrates at start, quietly. A state machine's app whose models have no migration
(``makemigrations`` never run, or run before the last model change) gets no table, or a stale
one, and its ``apply`` fails on every command: each is applied, on every node and for good, as
an error result, while the node looks healthy. Django's ``migrate`` only mentions such changes
at a verbosity ``runpaxos`` does not use, and not at all for an app without a migrations
package.
"""

from __future__ import annotations

from django.apps import apps
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from consensus import registry


def apps_missing_migrations() -> list[str]:
    """Labels of the state machines' apps (``registry.machine_apps``) with models but no
    migrations package, or with model changes no migration holds (what ``makemigrations
    --check`` would write). Other apps are left alone: a third-party app's pending changes (a
    ``DEFAULT_AUTO_FIELD`` it does not set, say) are not this node's to fix."""
    machine_apps = registry.machine_apps()
    loader = MigrationLoader(None, ignore_no_migrations=True)
    without_package = {
        config.label
        for config in apps.get_app_configs()
        if config.label in loader.unmigrated_apps and any(config.get_models())
    }
    detector = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps))
    changed = set(detector.changes(graph=loader.graph))
    return sorted((without_package | changed) & machine_apps)
