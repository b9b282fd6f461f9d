"""``runpaxos --demo``: a whole local cluster in one command, for trying the product out.

Each node is a child process running ``runpaxos --config ... --node N`` (its log goes to
``<data-dir>/nodeN.log``). Ctrl-C (or SIGTERM) stops every child, by PID, and waits for them:
the handlers are installed before the first child starts, so a signal that arrives while the
nodes are still starting stops the ones already started too (no orphan keeps a port).

A node that exits on its own (killed with ``kill -9`` to try failover, most often) does not stop
the demo: the others go on, and the demo prints the command line that starts that node again.
Only when every node has exited does the demo stop, with an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from django.core.management.base import CommandError

from consensus.config import (
    DEFAULT_BASE_PORT,
    ClusterConfig,
    ConfigError,
    load_config,
    write_demo_config,
)

from .processes import (
    NodeProcesses,
    node_command_line,
    start_nodes,
    stop_nodes,
    wait_until_serving,
)

DEFAULT_NODES = 3
POLL_INTERVAL = 0.5


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived: stop every node."""


class _StopSignals:
    """SIGTERM/SIGINT handlers that raise ``_Stopped`` in the main thread, wherever it is, except
    inside ``deferred()`` (a child being started, the nodes being stopped): there the signal is
    only recorded, and ``_Stopped`` is raised when that section ends."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.defer = False
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self.handle)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signum
        if first and not self.defer:
            raise _Stopped

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.defer = True
        try:
            yield
        finally:
            self.defer = False
        if self.received is not None:
            raise _Stopped


def run_demo(
    folder: Path,
    *,
    nodes: int | None,
    base_port: int | None,
    stdout: TextIO,
    server: str | None = None,
) -> None:
    """Run the demo cluster in ``folder`` until SIGTERM/SIGINT. ``nodes`` and ``base_port`` are
    None when not given: the defaults for a new demo, nothing to compare with for an existing
    one. ``server`` is each node's ``--server``."""
    folder = folder.resolve()
    config_path = folder / "cluster.json"
    existing = config_path.exists()
    if not existing:
        write_demo_config(
            folder,
            nodes=nodes or DEFAULT_NODES,
            base_port=base_port or DEFAULT_BASE_PORT,
            groups=(1, 2),
        )
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise CommandError(f"{error} (delete {folder} to start a fresh demo)") from None
    if existing:
        notice = _ignored_options(config, folder, nodes, base_port)
        if notice:
            stdout.write(notice + "\n")
    password_file = folder / "admin-password.txt"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12) + "\n", encoding="utf-8")
        password_file.chmod(0o600)
    password = password_file.read_text(encoding="utf-8").strip()
    stdout.write(f"starting {len(config.nodes)} nodes in {folder} ...\n")
    stdout.flush()
    env = dict(os.environ, PAXOS_DEMO_ADMIN_PASSWORD=password)
    children: NodeProcesses = {}
    signals = _StopSignals()
    try:
        signals.install()
        with signals.deferred():  # a child started but not yet in ``children`` would be lost
            children.update(start_nodes(config, folder, env, server=server))
        wait_until_serving(config, children, folder)
        _print_welcome(config, folder, password, stdout)
        _watch(config, children, folder, server, stdout)
    except _Stopped:
        pass
    finally:
        signals.defer = True  # a second Ctrl-C must not cut the stopping short
        stop_nodes(children)
        signals.restore()
        stdout.write("demo cluster stopped\n")


def _ignored_options(
    config: ClusterConfig, folder: Path, nodes: int | None, base_port: int | None
) -> str | None:
    """A notice when ``--nodes``/``--base-port`` were given but the existing demo differs."""
    ports = [node.port for node in config.nodes]
    ignored = []
    if nodes is not None and nodes != len(ports):
        ignored.append(f"--nodes {nodes}")
    if base_port is not None and base_port != ports[0]:
        ignored.append(f"--base-port {base_port}")
    if not ignored:
        return None
    return (
        f"notice: {folder} holds a demo of {len(ports)} nodes on ports "
        f"{', '.join(map(str, ports))}; {' and '.join(ignored)} ignored (delete the folder, "
        "or give another --data-dir, for a new demo)"
    )


def _print_welcome(config: ClusterConfig, folder: Path, password: str, out: TextIO) -> None:
    token = config.api_tokens[0] if config.api_tokens else "(none: add apiTokens to the config)"
    first = config.nodes[0]
    lines = [
        f"Paxos demo cluster: {len(config.nodes)} nodes, groups {list(config.group_ids)}, "
        f"data in {folder}",
    ]
    for node in config.nodes:
        lines.append(
            f"  node {node.node_id}: {node.http_url}/dashboard/   admin {node.http_url}/admin/"
            f"   log {folder / f'node{node.node_id}.log'}"
        )
    lines += [
        f"API token:   {token}",
        f"Admin login: admin / {password}   (every node)",
        "Try it:",
        f"  curl -X PUT -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
        f"-d '{json.dumps({'value': 'Mike'})}' {first.http_url}/api/kv/1/name",
        f"  curl -H 'Authorization: Bearer {token}' {config.nodes[-1].http_url}/api/kv/1/name",
        f"  curl -H 'Authorization: Bearer {token}' {first.http_url}/api/status/",
        "Press Ctrl-C to stop the cluster.",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _watch(
    config: ClusterConfig,
    children: NodeProcesses,
    folder: Path,
    server: str | None,
    out: TextIO,
) -> None:
    """Until a signal (``_Stopped``): report each node that exits, once, with the command that
    starts it again; when none is left, there is no cluster to keep running."""
    exited: set[int] = set()
    while True:
        for node_id, child in children.items():
            if node_id in exited or child.poll() is None:
                continue
            exited.add(node_id)
            others = "the others go on" if len(exited) < len(children) else "none is left"
            out.write(
                f"node {node_id} exited (status {child.returncode}); {others}. Restart it with: "
                f"{node_command_line(config, node_id, server)}\n"
            )
            out.flush()
        if len(exited) == len(children):
            raise CommandError(f"every node of the demo has exited; see the logs in {folder}")
        time.sleep(POLL_INTERVAL)
