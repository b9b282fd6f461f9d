"""``runpaxos --demo``: a whole local cluster in one command, for trying the product out.

Each node is a child process running ``runpaxos --config ... --node N`` (its log goes to
``<data-dir>/nodeN.log``). Ctrl-C (or SIGTERM) stops every child, by PID, and waits for them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import TextIO

from django.core.management.base import CommandError

from consensus.config import ClusterConfig, ConfigError, load_config, write_demo_config

from .processes import NodeProcesses, start_nodes, stop_nodes, wait_until_serving


def run_demo(folder: Path, *, nodes: int, base_port: int, stdout: TextIO) -> None:
    folder = folder.resolve()
    config_path = folder / "cluster.json"
    if not config_path.exists():
        write_demo_config(folder, nodes=nodes, base_port=base_port, groups=(1, 2))
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise CommandError(f"{error} (delete {folder} to start a fresh demo)") from None
    password_file = folder / "admin-password.txt"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12) + "\n", encoding="utf-8")
        password_file.chmod(0o600)
    password = password_file.read_text(encoding="utf-8").strip()
    children = start_nodes(config, folder, dict(os.environ, PAXOS_DEMO_ADMIN_PASSWORD=password))
    try:
        wait_until_serving(config, children, folder)
        _print_welcome(config, folder, password, stdout)
        _wait_for_signal(children)
    finally:
        stop_nodes(children)
        stdout.write("demo cluster stopped\n")


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


def _wait_for_signal(children: NodeProcesses) -> None:
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop["now"]:
            for node_id, child in children.items():
                if child.poll() is not None:
                    raise CommandError(f"node {node_id} exited with status {child.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
