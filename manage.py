#!/usr/bin/env python
"""Django's command-line utility for the Paxos service (``runpaxos``, ``migrate``, ...)."""

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


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paxos_site.settings")
    if sys.argv[1:2] == ["runpaxos"] and "--demo" not in sys.argv:
        use_uvloop()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
