"""``manage.py runserver``: refused. A Django development server carries no Paxos node, so the
site it serves has no runtime behind it (``/healthz`` says ok with ``node_id`` null, and every API
call fails); ``runpaxos`` starts the server together with a node.

Django picks the first installed app that defines a command, so this one only replaces daphne's
and Django's ``runserver`` when ``consensus`` comes before ``daphne`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Not available here: the site needs a Paxos node behind it. Use "
        "`manage.py runpaxos --demo` for a local cluster, or "
        "`manage.py runpaxos --config CLUSTER.json --node N` for one node."
    )
    requires_system_checks: list[str] = []  # nothing to check: it only explains

    def add_arguments(self, parser: CommandParser) -> None:
        # runserver's arguments, accepted (and hidden from --help) so that the message below,
        # not a usage error, answers
        hidden = argparse.SUPPRESS
        parser.add_argument("addrport", nargs="?", help=hidden)
        flags = (
            ["--noreload"],
            ["--nothreading"],
            ["--ipv6", "-6"],
            ["--insecure"],
            ["--nostatic"],
        )
        for names in flags:
            parser.add_argument(*names, action="store_true", help=hidden)

    def handle(self, *args: Any, **options: Any) -> None:
        raise CommandError(
            "runserver would serve the site without a Paxos node (no API, no replication); "
            "start one with `manage.py runpaxos --demo` (a local cluster) or "
            "`manage.py runpaxos --config CLUSTER.json --node N` (one node of a cluster)"
        )
