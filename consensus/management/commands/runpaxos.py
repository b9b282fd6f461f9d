"""``manage.py runpaxos``: start one node, or a whole local demo cluster."""

from __future__ import annotations

import logging
import math
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
MAX_TICK_MS = 1000
"""The longest tick: the config's timeouts are counted in ticks (an election takes at least 4), so
a longer tick would stretch them past what the config says."""
MAX_REQUEST_TIMEOUT = 3600.0
"""An hour: no client waits longer for a quorum, and ``inf`` or ``nan`` would fail every request."""
DEMO_OPTIONS = ("nodes", "data_dir", "base_port")
"""Options of ``--demo`` only: a node started with ``--config`` takes these from its config."""
NODE_OPTIONS = ("config", "node", "tick_ms", "request_timeout")
"""Options of one node only: the demo writes its own config and starts its nodes with defaults."""

logger = logging.getLogger("consensus.runtime")


class Command(BaseCommand):
    help = (
        "Start a Paxos node: an ASGI server (daphne, or uvicorn with --server uvicorn) serves the "
        "REST API, admin and peer websockets on the node's port, and the Paxos runtime runs in the "
        "same process. SIGTERM or Ctrl-C stops it cleanly: it first hands the groups it leads "
        "over to another node (at most $PAXOS_HAND_OVER_TIMEOUT seconds, 0.5; 0: no hand-over). "
        "With --demo, start a whole local cluster instead (one child process per node); the "
        "options marked (with --demo) apply only to it, and --config, --node, --tick-ms and "
        "--request-timeout only without it."
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
            help="(with --demo) nodes in a new demo cluster (3); an existing demo keeps its own",
        )
        parser.add_argument(
            "--data-dir",
            help=f"(with --demo) folder of the demo's config, databases and logs "
            f"({DEFAULT_DEMO_DIR}/); an existing demo there is started again with its data. A node "
            'started with --config keeps its data in the config\'s "dataDir"',
        )
        parser.add_argument(
            "--base-port",
            type=int,
            help="(with --demo) first port of a new demo (33333); an existing demo keeps its own",
        )
        parser.add_argument(
            "--tick-ms",
            type=int,
            help=f"length of one protocol tick in ms, 1..{MAX_TICK_MS} ({settings.PAXOS_TICK_MS})",
        )
        parser.add_argument(
            "--request-timeout",
            type=float,
            help="seconds a command may wait for a quorum before a 503, above 0 and at most "
            f"{MAX_REQUEST_TIMEOUT:g} ({REQUEST_TIMEOUT:g})",
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
        _refuse_options_of_the_other_mode(options)
        if options["demo"]:
            from consensus.management.demo import run_demo

            if options["nodes"] is not None and not 1 <= options["nodes"] <= 9:
                raise CommandError("--nodes must be between 1 and 9")
            if options["base_port"] is not None and not 1 <= options["base_port"] <= 65535 - 8:
                raise CommandError("--base-port must be between 1 and 65527")
            folder = Path(options["data_dir"] or DEFAULT_DEMO_DIR)
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
        tick_ms, request_timeout = _node_timing(options)
        try:
            config = load_config(
                options["config"],
                options["node"],
                default_state_machine=settings.PAXOS_DEFAULT_STATE_MACHINE,
            )
        except ConfigError as error:
            raise CommandError(str(error)) from None
        if not _configured_for(config):
            _restart_as_node(config, tick_ms, request_timeout, options["server"])
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
                tick_ms=tick_ms,
                request_timeout=request_timeout,
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
        _check_sqlite_writable(config, url)
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
            raise CommandError(_database_problem(config, url, error)) from None
        password = os.environ.get("PAXOS_DEMO_ADMIN_PASSWORD")
        if password:
            _ensure_admin("admin", password)


def _refuse_options_of_the_other_mode(options: dict[str, Any]) -> None:
    """``--data-dir`` with ``--config`` (or ``--config`` with ``--demo``) used to be ignored
    silently: a node would keep its data somewhere else than its user asked for."""
    if options["demo"]:
        given, verb, them = _given(options, NODE_OPTIONS)
        if given:
            raise CommandError(
                f"{given} {verb} to one node, not to --demo (the demo writes its own config in "
                f"--data-dir and starts its nodes with the defaults): drop {them}, or drop --demo "
                "to start one node"
            )
        return
    given, verb, them = _given(options, DEMO_OPTIONS)
    if given:
        raise CommandError(
            f"{given} {verb} only with --demo (a node started with --config takes its data folder, "
            'nodes and ports from the config: "dataDir", "nodes"): add --demo for a local demo '
            f"cluster, or drop {them}"
        )


def _given(options: dict[str, Any], names: tuple[str, ...]) -> tuple[str, str, str]:
    """The options among ``names`` given on the command line (none of them has a default), with
    the verb and pronoun that go with them: ``("--nodes and --base-port", "apply", "them")``."""
    given = [f"--{name.replace('_', '-')}" for name in names if options[name] is not None]
    if len(given) == 1:
        return given[0], "applies", "it"
    return " and ".join(given), "apply", "them"


def _node_timing(options: dict[str, Any]) -> tuple[int, float]:
    """``--tick-ms`` and ``--request-timeout``, or their defaults; a CommandError for a value that
    would break the node: ``nan`` or ``inf`` seconds made every request fail with a 500."""
    tick_ms = settings.PAXOS_TICK_MS if options["tick_ms"] is None else options["tick_ms"]
    timeout = REQUEST_TIMEOUT if options["request_timeout"] is None else options["request_timeout"]
    if not 1 <= tick_ms <= MAX_TICK_MS:
        raise CommandError(
            f"--tick-ms must be between 1 and {MAX_TICK_MS} milliseconds, not {tick_ms} (the "
            f"default is {settings.PAXOS_TICK_MS})"
        )
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_REQUEST_TIMEOUT):
        raise CommandError(
            f"--request-timeout must be a number of seconds above 0 and at most "
            f"{MAX_REQUEST_TIMEOUT:g} (an hour), not {timeout} (the default is {REQUEST_TIMEOUT:g})"
        )
    return tick_ms, timeout


def _check_sqlite_writable(config: ClusterConfig, url: str | None) -> None:
    """A SQLite file or folder this user cannot write to is named here, in one line: SQLite only
    says "unable to open database file" at the first query, which names neither. The folder must
    be writable too: WAL mode creates ``-wal`` and ``-shm`` files beside the database."""
    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        return
    file = Path(database["NAME"])
    for path in (file.parent, file):
        if path.exists() and not os.access(path, os.W_OK):
            what = "folder" if path == file.parent else "database file"
            if url:
                raise CommandError(
                    f"DATABASE_URL names the SQLite file {file}, but the {what} {path} is not "
                    "writable: make it writable for this user, or name another file"
                )
            raise CommandError(
                f"{config.path}: dataDir: the {what} {path} is not writable (node "
                f"{config.my_id} keeps its database there): make it writable for this user, or "
                "give another dataDir"
            )


def _database_problem(config: ClusterConfig, url: str | None, error: Exception) -> str:
    """The line for a database the node could not migrate. Its hint is only for what causes
    that most often: nodes starting at the same moment on one database (a DATABASE_URL without
    {node_id}) collide in their migrations before the ownership check can say so."""
    name = settings.DATABASES["default"]["NAME"]
    problem = f"node {config.my_id} could not prepare its database {name}: {error}"
    if url and "{node_id}" not in url:
        problem += (
            ". If several nodes use one database (a DATABASE_URL without {node_id}), give each "
            "its own."
        )
    return problem


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


def _restart_as_node(
    config: ClusterConfig, tick_ms: int, request_timeout: float, server: str
) -> None:
    """Re-run this command with PAXOS_CONFIG/PAXOS_NODE_ID set, so settings pick this node's
    database; exec keeps the PID, so whoever started us can still stop us by it, and the death
    signal the demo gives its nodes (``processes.die_with_parent``: ``execve`` keeps it)."""
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
        str(tick_ms),
        "--request-timeout",
        repr(request_timeout),
        "--server",
        server,
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
