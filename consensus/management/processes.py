"""Starting and stopping local node processes (``runpaxos --demo`` and ``paxosbench`` use it).

Every child is a ``manage.py runpaxos --config ... --node N`` process whose output goes to
``<folder>/nodeN.log``; ``stop_nodes`` stops each one by PID (SIGTERM, then SIGKILL).

On Linux each child also gets SIGTERM when the process that started it dies, however it dies
(``kill -9`` of the demo used to leave its nodes running, holding its ports): see
``die_with_parent``. Elsewhere the children outlive a parent killed that way, as before.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from consensus.config import ClusterConfig, NodeAddress

READY_TIMEOUT = 60.0
PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal a process gets when its parent dies."""

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
    """Start node ``node_id`` (again), its output appended to ``<folder>/nodeN.log``; on Linux
    it stops (SIGTERM) when this process dies (``die_with_parent``)."""
    with (folder / f"node{node_id}.log").open("ab") as log:
        return subprocess.Popen(
            node_command(config, node_id, extra_args, server),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            preexec_fn=die_with_parent(),
        )


def die_with_parent(parent_pid: int | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent (this process, or
    ``parent_pid``) dies: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, which ``execve`` keeps, so the
    signal also survives the node's re-exec of itself (``runpaxos._restart_as_node``). The node
    then stops as on SIGTERM, cleanly. None (no death signal) off Linux, without ``prctl``, and
    outside the main thread.

    The signal comes when the *thread* that started the child ends, not the process: started from
    a worker thread, the child would be stopped when that thread ends, parent alive. The demo and
    ``paxosbench`` start their nodes from the main thread, which ends with the process.

    In the child, before ``exec``: SIGTERM goes back to its default action first (the parent's
    Python handler, inherited by the fork, would only record a signal arriving before ``exec``,
    and the node would never see it); then ``prctl``; then, as a parent that died before
    ``prctl`` ran sends no signal, the child compares ``getppid()`` with its parent's PID and
    stops itself with SIGTERM when they differ (it was adopted: the parent is gone)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid() if parent_pid is None else parent_pid

    def set_death_signal() -> None:  # in the child, between fork and exec
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl``, looked up once in the parent (not in the forked child); None without."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


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
