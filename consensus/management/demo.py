"""``runpaxos --demo``: a whole local cluster in one command, for trying the product out.

Each node is a child process running ``runpaxos --config ... --node N`` (its log goes to
``<data-dir>/nodeN.log``). Ctrl-C (or SIGTERM) stops every child, by PID, and waits for them:
the handlers are installed before the first child starts, so a signal that arrives while the
nodes are still starting stops the ones already started too (no orphan keeps a port). A demo
that dies without its handlers running (``kill -9``, the OOM killer) cannot stop them: on Linux
each node is started with a death signal instead (``processes.die_with_parent``), SIGTERM when
the demo dies, and stops as it would on Ctrl-C. The nodes are started, and restarted, from the
main thread, which the death signal is tied to.

Before anything starts, each node's port must be free (a second demo on the same ports would
otherwise print its banner and then lose every node to "address already in use"): if one is
taken, the demo stops at once with one line saying which.

A node that exits on its own (killed with ``kill -9`` to try failover, most often) does not stop
the demo: the others go on, and the demo starts that node again ``RESTART_DELAY`` seconds later,
as its own child again (same environment, same log), so that Ctrl-C still stops every node. A node
that fails with an error status soon after it started would only fail again: the demo leaves it
down and says so; when every node is down that way, the demo stops with an error.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import signal
import socket
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
    NodeAddress,
    load_config,
    write_demo_config,
)

from .processes import (
    NodeProcesses,
    answers_healthz,
    start_node,
    start_nodes,
    stop_nodes,
    wait_until_serving,
)

DEFAULT_NODES = 3
POLL_INTERVAL = 0.5
RESTART_DELAY = 2.0
"""Seconds between a node's exit and its restart: long enough to watch the others go on."""
TOKEN_FILE = "api-token.txt"
"""The demo's API token, alone on one line, next to ``cluster.json`` and ``admin-password.txt``."""
MIN_UPTIME = 30.0
"""A node that exits with an error status sooner than this after it started is left down."""


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
        count, first_port = nodes or DEFAULT_NODES, base_port or DEFAULT_BASE_PORT
        _check_ports(
            [
                NodeAddress(number, "127.0.0.1", first_port + number - 1)
                for number in range(1, count + 1)
            ],
            "is a demo already running? Stop it, or give --base-port PORT for other ports",
        )
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
        _check_ports(
            list(config.nodes),
            f"is the demo of {folder} already running? Stop it, or start another one with "
            "--data-dir OTHER_FOLDER --base-port PORT",
        )
    password_file = folder / "admin-password.txt"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12) + "\n", encoding="utf-8")
        password_file.chmod(0o600)
    password = password_file.read_text(encoding="utf-8").strip()
    token_file = _write_token_file(config, folder)
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
        _print_welcome(config, children, folder, password, token_file, stdout)
        _watch(config, children, folder, env, server, signals, stdout)
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


def _check_ports(nodes: list[NodeAddress], advice: str) -> None:
    """A CommandError (one line, status 1) naming the first node whose port is taken."""
    for node in nodes:
        if _port_in_use(node.host, node.port):
            raise CommandError(f"port {node.port} (node {node.node_id}) is in use: {advice}")


def _port_in_use(host: str, port: int) -> bool:
    """Whether a socket already listens on ``host:port`` (the probe is closed at once). Only
    "address in use" counts: any other failure is the node's to report."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the nodes' servers do: the TIME_WAIT connections a stopped demo leaves are no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def _write_token_file(config: ClusterConfig, folder: Path) -> Path | None:
    """The config's first API token in ``api-token.txt`` (mode 0600, as ``admin-password.txt``
    and the config), for scripts: ``TOKEN=$(cat demo-cluster/api-token.txt)``; the config itself
    starts with a ``//`` comment, which ``jq`` and ``json.load`` refuse. Written at every start,
    so it follows an edited config; removed when the config has no token."""
    token_file = folder / TOKEN_FILE
    if not config.api_tokens:
        token_file.unlink(missing_ok=True)
        return None
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        handle.write(config.api_tokens[0] + "\n")
    return token_file


def _print_welcome(
    config: ClusterConfig,
    children: NodeProcesses,
    folder: Path,
    password: str,
    token_file: Path | None,
    out: TextIO,
) -> None:
    token = config.api_tokens[0] if config.api_tokens else "(none: add apiTokens to the config)"
    first = config.nodes[0]
    lines = [
        f"Paxos demo cluster: {len(config.nodes)} nodes, groups {list(config.group_ids)}, "
        f"data in {folder}",
    ]
    for node in config.nodes:
        lines.append(
            f"  node {node.node_id} (pid {children[node.node_id].pid}): "
            f"{node.http_url}/dashboard/   admin {node.http_url}/admin/"
            f"   log {folder / f'node{node.node_id}.log'}"
        )
    lines += [
        f"API token:   {token}" + (f"   (also in {token_file})" if token_file else ""),
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
    env: dict[str, str],
    server: str | None,
    signals: _StopSignals,
    out: TextIO,
) -> None:
    """Until a signal (``_Stopped``): restart each node that exits, ``RESTART_DELAY`` seconds
    later, and say when it serves again; leave down a node that failed soon after it started.
    When every node is down that way, there is no cluster to keep running."""
    started = dict.fromkeys(children, time.monotonic())
    restart_at: dict[int, float] = {}
    coming_back: set[int] = set()  # restarted, not answering /healthz yet
    left_down: set[int] = set()
    while True:
        now = time.monotonic()
        for node_id, child in children.items():
            if node_id in left_down or node_id in restart_at or child.poll() is None:
                continue
            coming_back.discard(node_id)
            status = child.returncode
            how = f"signal {-status}" if status < 0 else f"status {status}"
            if status > 0 and now - started[node_id] < MIN_UPTIME:
                left_down.add(node_id)
                _say(
                    out,
                    f"node {node_id} exited ({how}) {now - started[node_id]:.0f} s after it "
                    f"started; not restarting it: see {folder / f'node{node_id}.log'}",
                )
            else:
                restart_at[node_id] = now + RESTART_DELAY
                _say(
                    out,
                    f"node {node_id} exited ({how}); restarting it in {RESTART_DELAY:g} s "
                    "(Ctrl-C stops the demo)",
                )
        if len(left_down) == len(children):
            raise CommandError(f"every node of the demo has exited; see the logs in {folder}")
        for node_id, when in list(restart_at.items()):
            if when > now:
                continue
            with signals.deferred():  # a child started but not yet in ``children`` would be lost
                children[node_id] = start_node(config, node_id, folder, env, server=server)
                del restart_at[node_id]
            started[node_id] = time.monotonic()
            coming_back.add(node_id)
            _say(out, f"node {node_id} restarted (pid {children[node_id].pid})")
        for node_id in sorted(coming_back):
            if answers_healthz(config.node(node_id), timeout=0.5):
                coming_back.discard(node_id)
                _say(out, f"node {node_id} serves again (pid {children[node_id].pid})")
        time.sleep(POLL_INTERVAL)


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()
