"""``manage.py runpaxos``: start one node, or a whole local demo cluster."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from consensus import version_text
from consensus.config import ClusterConfig, ConfigError, load_config, startup_warnings
from consensus.management.limits import raise_open_files_limit

DEFAULT_DEMO_DIR = "demo-cluster"
SERVERS = ("daphne", "uvicorn")  # as consensus.management.server.SERVERS (imported late there)
REQUEST_TIMEOUT = float(getattr(settings, "PAXOS_REQUEST_TIMEOUT", 5.0))
MAX_FRAME_SIZE = int(getattr(settings, "PAXOS_MAX_FRAME_SIZE", 16 * 1024 * 1024))

logger = logging.getLogger("consensus.runtime")


class Command(BaseCommand):
    help = (
        "Start a Paxos node: an ASGI server (daphne, or uvicorn with --server uvicorn) serves the "
        "REST API, admin and peer websockets on the node's port, and the Paxos runtime runs in the "
        "same process. SIGTERM or Ctrl-C stops it cleanly: it first hands the groups it leads "
        "over to another node (at most $PAXOS_HAND_OVER_TIMEOUT seconds, 0.5; 0: no hand-over). "
        "With --demo, start a whole local cluster instead (one child process per node)."
    )

    def get_version(self) -> str:
        return version_text()  # --version: this release, not Django's

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", help="the cluster config file (JSON with // comments)")
        parser.add_argument(
            "--node", type=int, help="which node of the config to run (default: its myid)"
        )
        parser.add_argument(
            "--demo", action="store_true", help="start a local cluster with its own data folder"
        )
        parser.add_argument(
            "--nodes",
            type=int,
            help="nodes in a new demo cluster (3); an existing demo keeps its own",
        )
        parser.add_argument(
            "--data-dir",
            default=DEFAULT_DEMO_DIR,
            help=f"folder of the demo's config, databases and logs ({DEFAULT_DEMO_DIR}/); "
            "an existing demo there is started again with its data",
        )
        parser.add_argument(
            "--base-port",
            type=int,
            help="first port of a new demo (33333); an existing demo keeps its own",
        )
        parser.add_argument(
            "--tick-ms",
            type=int,
            default=settings.PAXOS_TICK_MS,
            help=f"length of one protocol tick in ms ({settings.PAXOS_TICK_MS})",
        )
        parser.add_argument(
            "--request-timeout",
            type=float,
            default=REQUEST_TIMEOUT,
            help=f"seconds a command may wait for a quorum before a 503 ({REQUEST_TIMEOUT:g})",
        )
        parser.add_argument(
            "--server",
            choices=SERVERS,
            default=_default_server(),
            help="the ASGI server that carries the node: daphne (Twisted) or uvicorn (httptools; "
            "less overhead per REST request). Default: $PAXOS_SERVER if set, else daphne. With "
            "--demo, every node of the cluster uses it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["server"] not in SERVERS:
            raise CommandError(
                f"PAXOS_SERVER={options['server']!r}: the server is one of {', '.join(SERVERS)}"
            )
        if options["demo"]:
            from consensus.management.demo import run_demo

            if options["nodes"] is not None and not 1 <= options["nodes"] <= 9:
                raise CommandError("--nodes must be between 1 and 9")
            if options["base_port"] is not None and not 1 <= options["base_port"] <= 65535 - 8:
                raise CommandError("--base-port must be between 1 and 65527")
            folder = Path(options["data_dir"])
            _check_demo_folder(folder)
            os.environ["PAXOS_SERVER"] = options["server"]  # the nodes inherit the environment
            run_demo(
                folder,
                nodes=options["nodes"],
                base_port=options["base_port"],
                stdout=self.stdout,
                server=options["server"],
            )
            return
        if not options["config"]:
            raise CommandError("give --config PATH to start a node, or --demo for a local cluster")
        if options["tick_ms"] < 1 or options["request_timeout"] <= 0:
            raise CommandError("--tick-ms and --request-timeout must be positive")
        try:
            config = load_config(
                options["config"],
                options["node"],
                default_state_machine=settings.PAXOS_DEFAULT_STATE_MACHINE,
            )
        except ConfigError as error:
            raise CommandError(str(error)) from None
        if not _configured_for(config):
            _restart_as_node(config, options)
        for warning in startup_warnings(config):  # after the exec: logged once
            logger.warning("%s", warning)
        raise_open_files_limit(config.my_id)
        self._prepare_database(config)
        machines = _build_state_machines(config)
        from consensus.management.server import ListenError, StorageFailure, serve

        try:
            serve(
                config,
                machines,
                tick_ms=options["tick_ms"],
                request_timeout=options["request_timeout"],
                max_frame_size=MAX_FRAME_SIZE,
                server=options["server"],
            )
        except (ListenError, StorageFailure) as error:
            raise CommandError(str(error)) from None

    def _prepare_database(self, config: ClusterConfig) -> None:
        from consensus.storage.databases import ensure_postgres_database, expand_database_url

        url = os.environ.get("DATABASE_URL")
        if url:
            try:
                ensure_postgres_database(expand_database_url(url, config.my_id))
            except Exception as error:  # noqa: BLE001 - any connection problem is a user error
                raise CommandError(f"cannot reach the database of DATABASE_URL: {error}") from None
        from django.db import DatabaseError

        from consensus.management.unmigrated import apps_missing_migrations
        from consensus.storage.identity import ForeignDatabaseError, claim_database

        missing = apps_missing_migrations()
        if missing:
            labels = " ".join(missing)
            raise CommandError(
                f"the models of {labels} have changes without a migration: run `python "
                f"manage.py makemigrations {labels}` (with the PAXOS_EXTRA_APPS this node has), "
                "then start the node again; without its tables a state machine would apply "
                "every command of its group as an error, on every node"
            )
        try:
            call_command("migrate", interactive=False, verbosity=0)
            claim_database(config.my_id)
        except ForeignDatabaseError as error:
            raise CommandError(str(error)) from None
        except DatabaseError as error:
            # Seen when nodes start at the same moment on one database (a DATABASE_URL without
            # {node_id}): their migrations collide before the ownership check can say so.
            raise CommandError(
                f"node {config.my_id} could not prepare its database: {error}. If several "
                "nodes use one database (a DATABASE_URL without {node_id}), give each its own."
            ) from None
        password = os.environ.get("PAXOS_DEMO_ADMIN_PASSWORD")
        if password:
            _ensure_admin("admin", password)


def _check_demo_folder(folder: Path) -> None:
    """``--data-dir`` is created when missing (consensus.config.write_demo_config); a file in its
    place, or in place of a folder above it, is one line instead of a FileExistsError."""
    for path in (folder.absolute(), *folder.absolute().parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == folder.absolute() else f"is in {path}, a file"
                raise CommandError(
                    f"--data-dir {folder} {what}, not a folder: give a folder for the demo (a "
                    "missing one is created)"
                )
            return


def _default_server() -> str:
    """$PAXOS_SERVER picks the server of a node started without --server (argparse does not check
    a default against the choices: ``handle`` does)."""
    return os.environ.get("PAXOS_SERVER", "").strip().lower() or "daphne"


def _configured_for(config: ClusterConfig) -> bool:
    """Settings (the database above all) are computed from the environment at start-up."""
    current = getattr(settings, "PAXOS_CLUSTER", None)
    return (
        current is not None
        and current.my_id == config.my_id
        and Path(current.path).resolve() == Path(config.path).resolve()
    )


def _restart_as_node(config: ClusterConfig, options: dict[str, Any]) -> None:
    """Re-run this command with PAXOS_CONFIG/PAXOS_NODE_ID set, so settings pick this node's
    database; exec keeps the PID, so whoever started us can still stop us by it."""
    env = dict(os.environ)
    env["PAXOS_CONFIG"] = str(Path(config.path).resolve())
    env["PAXOS_NODE_ID"] = str(config.my_id)
    argv = [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        "runpaxos",
        "--config",
        env["PAXOS_CONFIG"],
        "--node",
        env["PAXOS_NODE_ID"],
        "--tick-ms",
        str(options["tick_ms"]),
        "--request-timeout",
        str(options["request_timeout"]),
        "--server",
        options["server"],
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def _build_state_machines(config: ClusterConfig) -> dict[int, Any]:
    from consensus.registry import NotRegistered, registry

    machines = {}
    for spec in config.groups:
        try:
            machines[spec.group_id] = registry.create(spec.state_machine, spec.group_id)
        except NotRegistered as error:
            raise CommandError(f"group {spec.group_id}: {error.args[0]}") from None
    return machines


def _ensure_admin(username: str, password: str) -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user, _created = user_model.objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
