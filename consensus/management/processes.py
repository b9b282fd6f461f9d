"""Starting and stopping local node processes (``runpaxos --demo`` and ``paxosbench`` use it).

Every child is a ``manage.py runpaxos --config ... --node N`` process whose output goes to
``<folder>/nodeN.log``; ``stop_nodes`` stops each one by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from consensus.config import ClusterConfig, NodeAddress

READY_TIMEOUT = 60.0

NodeProcesses = dict[int, subprocess.Popen[bytes]]


def start_nodes(
    config: ClusterConfig,
    folder: Path,
    env: Mapping[str, str],
    extra_args: tuple[str, ...] = (),
    server: str | None = None,
) -> NodeProcesses:
    """``server`` ("daphne" or "uvicorn") is passed on as ``--server``; without it the nodes use
    ``PAXOS_SERVER`` from ``env``, else daphne."""
    children: NodeProcesses = {}
    for node in config.nodes:
        children[node.node_id] = start_node(config, node.node_id, folder, env, extra_args, server)
    return children


def start_node(
    config: ClusterConfig,
    node_id: int,
    folder: Path,
    env: Mapping[str, str],
    extra_args: tuple[str, ...] = (),
    server: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start node ``node_id`` (again), its output appended to ``<folder>/nodeN.log``."""
    with (folder / f"node{node_id}.log").open("ab") as log:
        return subprocess.Popen(
            node_command(config, node_id, extra_args, server),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
        )


def node_command(
    config: ClusterConfig,
    node_id: int,
    extra_args: tuple[str, ...] = (),
    server: str | None = None,
) -> list[str]:
    """The command line that runs node ``node_id`` (what ``start_nodes`` starts)."""
    if server is not None:
        extra_args = ("--server", server, *extra_args)
    return [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        "runpaxos",
        "--config",
        str(config.path),
        "--node",
        str(node_id),
        *extra_args,
    ]


def wait_until_serving(config: ClusterConfig, children: NodeProcesses, folder: Path) -> None:
    """Until every node answers ``/healthz``; a node that exits is a CommandError."""
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = {node.node_id: node for node in config.nodes}
    while waiting:
        for node_id, node in list(waiting.items()):
            if children[node_id].poll() is not None:
                raise CommandError(
                    f"node {node_id} exited; see {folder / f'node{node_id}.log'} "
                    f"(is port {node.port} free?)"
                )
            if answers_healthz(node, timeout=1):
                del waiting[node_id]
        if time.monotonic() > deadline:
            raise CommandError(f"nodes {sorted(waiting)} did not start within {READY_TIMEOUT:g}s")
        time.sleep(0.2)


def answers_healthz(node: NodeAddress, timeout: float) -> bool:
    """Whether the node's server answers ``/healthz`` (with 200) within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{node.http_url}/healthz", timeout=timeout):
            return True
    except (urllib.error.URLError, OSError):
        return False


def stop_nodes(children: Mapping[int, subprocess.Popen[Any]], timeout: float = 15.0) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
