"""``manage.py pruneresults``: drop old exactly-once results (``consensus.storage.pruning``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError


class Command(BaseCommand):
    help = (
        "Delete request-id results older than --ttl seconds and, per group, all but the newest "
        "--max (defaults: PAXOS_REQUEST_RESULT_TTL and PAXOS_REQUEST_RESULT_MAX). A retry of a "
        "pruned request id is applied again, so keep the TTL well above clients' retry windows. "
        "Run it for one node: --config cluster.json --node N (or with PAXOS_CONFIG/PAXOS_NODE_ID "
        "set, or DATABASE_URL)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", help="the cluster config file, to find the node's database")
        parser.add_argument("--node", type=int, help="which node of --config (default: its myid)")
        parser.add_argument(
            "--ttl",
            type=float,
            default=settings.PAXOS_REQUEST_RESULT_TTL,
            help=f"seconds to keep results ({settings.PAXOS_REQUEST_RESULT_TTL}); -1: no limit",
        )
        parser.add_argument(
            "--max",
            type=int,
            default=settings.PAXOS_REQUEST_RESULT_MAX,
            help=f"results kept per group ({settings.PAXOS_REQUEST_RESULT_MAX}); -1: no limit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["config"]:
            _reexec_for_node(options["config"], options["node"])
        from consensus.storage.pruning import prune_request_results

        ttl = None if options["ttl"] < 0 else options["ttl"]
        max_results = None if options["max"] < 0 else options["max"]
        try:
            report = prune_request_results(ttl_seconds=ttl, max_results=max_results)
        except DatabaseError as error:
            raise CommandError(
                f"cannot prune: {error} (is this the node's database, and migrated?)"
            ) from None
        self.stdout.write(
            f"deleted {report.deleted} request results "
            f"({report.expired} expired, {report.over_limit} over the per-group limit)"
        )


def _reexec_for_node(config_path: str, node_id: int | None) -> None:
    """Settings choose the database from PAXOS_CONFIG/PAXOS_NODE_ID at start-up: re-run with
    them set, unless this process already is that node's (as ``runpaxos`` does)."""
    from consensus.config import ConfigError, load_config

    try:
        config = load_config(config_path, node_id)
    except ConfigError as error:
        raise CommandError(str(error)) from None
    current = getattr(settings, "PAXOS_CLUSTER", None)
    if (
        current is not None
        and current.my_id == config.my_id
        and Path(current.path).resolve() == Path(config.path).resolve()
    ):
        return
    env = dict(os.environ, PAXOS_CONFIG=str(Path(config.path).resolve()))
    env["PAXOS_NODE_ID"] = str(config.my_id)
    argv = [sys.executable, *sys.argv]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
