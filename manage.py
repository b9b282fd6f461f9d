#!/usr/bin/env python
"""Django's command-line utility for the Paxos service (``runpaxos``, ``migrate``, ...)."""

import importlib
import os
import sys
from pathlib import Path


def use_uvloop() -> None:
    """A node runs on uvloop when it is installed (PAXOS_UVLOOP=0 turns it off). Daphne creates
    its event loop when ``daphne.server`` is first imported, which happens while Django sets up
    (the daphne app), so the policy is set here, before anything else."""
    if os.environ.get("PAXOS_UVLOOP", "1") == "0":
        return
    try:
        import asyncio

        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def load_settings_or_exit() -> None:
    """The project's settings read the environment (``PAXOS_NODE_ID``, ``DATABASE_URL``, the
    node's cluster config) and create the node's data folder: a mistake there is one line and
    status 1, not a traceback. The settings word their errors (``ImproperlyConfigured``); an
    ``OSError`` they did not foresee is printed as the system gives it, still on one line."""
    if os.environ["DJANGO_SETTINGS_MODULE"] != "paxos_site.settings":
        return
    from django.core.exceptions import ImproperlyConfigured

    try:
        importlib.import_module("paxos_site.settings")
    except ImproperlyConfigured as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: {' '.join(str(error).split())}")


def sqlite_file() -> Path | None:
    """The SQLite file of the ``default`` database; None for another engine or other settings
    (whose errors are Django's to report)."""
    if os.environ["DJANGO_SETTINGS_MODULE"] != "paxos_site.settings":
        return None
    from django.conf import settings

    database = settings.DATABASES["default"]
    return Path(database["NAME"]) if "sqlite" in database["ENGINE"] else None


def missing_table_hint(error: Exception, existed: bool) -> str | None:
    """One line instead of a traceback for SQLite's ``no such table`` from a command run on a
    database nobody migrated (``createsuperuser`` without ``PAXOS_CONFIG``/``PAXOS_NODE_ID``
    uses the development ``db.sqlite3``, not a node's database): SQLite's message, the file and
    what to set. None (the error is raised as usual) for any other error, for ``runpaxos``
    (which migrates its database itself) and with ``--traceback``. ``existed``: whether the
    file was there before the command ran (SQLite creates a missing one, empty)."""
    from django.db.utils import OperationalError

    path = sqlite_file()
    message = " ".join(str(error).split())
    if (
        not isinstance(error, OperationalError)
        or not message.startswith("no such table")
        or path is None
        or sys.argv[1:2] == ["runpaxos"]
        or "--traceback" in sys.argv
    ):
        return None
    if os.environ.get("PAXOS_CONFIG"):
        return (
            f"error: {message} in {path}: this node's database was never migrated; start the "
            "node once (runpaxos migrates its database), then run this command again (with "
            "PAXOS_EXTRA_APPS if the table is a model of your own state machine's app)"
        )
    which = "the development database" if not os.environ.get("DATABASE_URL") else "DATABASE_URL"
    created = "" if existed else ", which this command created, empty"
    return (
        f"error: {message} in {path} ({which}{created}): PAXOS_CONFIG and PAXOS_NODE_ID are not "
        "set. For a node's database set both, e.g. PAXOS_CONFIG=demo-cluster/cluster.json "
        f"PAXOS_NODE_ID=1 python manage.py {sys.argv[1] if len(sys.argv) > 1 else 'COMMAND'} "
        "(the node must have started once)"
    )


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paxos_site.settings")
    if sys.argv[1:2] == ["runpaxos"] and "--demo" not in sys.argv:
        use_uvloop()
    load_settings_or_exit()
    from django.core.management import execute_from_command_line

    path = sqlite_file()
    existed = path is None or path.exists()
    try:
        execute_from_command_line(sys.argv)
    except Exception as error:
        hint = missing_table_hint(error, existed)
        if hint is None:
            raise
        sys.exit(hint)


if __name__ == "__main__":
    main()
