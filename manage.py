#!/usr/bin/env python
"""Django's command-line utility for the Paxos service (``runpaxos``, ``migrate``, ...)."""

import importlib
import os
import sys


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


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paxos_site.settings")
    if sys.argv[1:2] == ["runpaxos"] and "--demo" not in sys.argv:
        use_uvloop()
    load_settings_or_exit()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
