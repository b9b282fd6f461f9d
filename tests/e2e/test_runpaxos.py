"""``manage.py runpaxos`` as users run it: a node that cannot listen, and ``--demo`` with its
signals, a busy port, a node that dies (and comes back), and an existing demo folder. Also
``runserver``, which must refuse.

Every process a test starts (the command and the nodes it starts) is stopped by PID at the end,
also when the test fails (``Demo.close``)."""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from consensus.config import write_demo_config
from tests.fixtures.ports import free_port_block
from tests.fixtures.procs import clean_env, runpaxos_pids

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _children(pid: int) -> dict[int, str]:
    """The child processes of ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    """A node process that still runs (not a zombie, not a reused PID)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"runpaxos" in cmdline


def _nodes_of(folder: Path) -> set[int]:
    """Node processes whose command line names ``folder`` (a test's own tmp folder)."""
    return runpaxos_pids(f"{folder}/")


class Demo:
    """``runpaxos --demo --data-dir FOLDER ...`` in a child process, its output read line by
    line."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        args = ("--data-dir", str(folder), *args)
        self.process = subprocess.Popen(
            [sys.executable, str(PROJECT / "manage.py"), "runpaxos", "--demo", *args],
            cwd=PROJECT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.nodes: dict[int, str] = {}  # every node PID seen, to stop orphans too
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                self.poll_nodes()
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout:g}s:\n{''.join(self.output)}")

    def poll_nodes(self) -> dict[int, str]:
        current = _children(self.process.pid)
        self.nodes.update(current)
        return current

    def wait_for_nodes(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.poll_nodes()) < count:
            assert time.monotonic() < deadline, f"the demo did not start {count} node(s)"
            time.sleep(0.02)

    def node_pid(self, node_id: int) -> int:
        for pid, cmdline in self.poll_nodes().items():
            if f"--node {node_id} " in cmdline + " ":
                return pid
        raise AssertionError(f"no process of node {node_id}")

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout=timeout)
        time.sleep(0.2)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in set(self.nodes) | _nodes_of(self.folder):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.close()


def test_node_that_cannot_listen_exits_with_an_error(tmp_path: Path) -> None:
    """Port in use: one line naming node, address and reason, status 1, for both servers. The
    start-up warnings of a config with no token and the README's secret come first."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port_block(1)))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_demo_config(tmp_path, nodes=1, base_port=port)
        document = json.loads(path.read_text().split("\n", 1)[1])
        document |= {"secret": "change-me", "apiTokens": []}
        path.write_text(json.dumps(document))
        for server in ("daphne", "uvicorn"):
            result = subprocess.run(
                [sys.executable, str(PROJECT / "manage.py"), "runpaxos", "--config", str(path)]
                + ["--node", "1", "--server", server],
                cwd=PROJECT,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, (server, result.stderr)
            assert (
                f"node 1 could not listen on 127.0.0.1:{port}: address already in use"
                in result.stderr
            )
            assert "Traceback" not in result.stderr
            assert "apiTokens is empty: no client can use" in result.stderr
            assert 'secret is the README\'s example "change-me"' in result.stderr


def test_sigterm_while_the_demo_starts_stops_every_node(tmp_path: Path, demos: list[Demo]) -> None:
    demo = Demo(tmp_path / "demo", "--nodes", "3", "--base-port", str(free_port_block(3)))
    demos.append(demo)
    demo.wait_for_nodes(1)  # started, far from serving (a node needs seconds for that)
    demo.process.send_signal(signal.SIGTERM)
    assert demo.wait() == 0, "".join(demo.output)
    assert demo.nodes, "no node was seen"
    assert not [pid for pid in set(demo.nodes) | _nodes_of(demo.folder) if _alive(pid)], "orphans"
    text = "".join(demo.output)
    assert f"starting 3 nodes in {tmp_path / 'demo'} ..." in text
    assert "demo cluster stopped" in text


def test_demo_on_a_busy_port_stops_at_once(tmp_path: Path, demos: list[Demo]) -> None:
    """A port in use (a demo already running, say): one line naming it, status 1, before any
    banner or node; for a new demo folder and for an existing one (where --base-port is
    ignored, so the advice differs)."""
    base = free_port_block(3)
    existing = tmp_path / "existing"
    write_demo_config(existing, nodes=3, base_port=base, groups=(1, 2))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 1))  # node 2's
        holder.listen()
        for folder, advice in (
            (tmp_path / "new", "is a demo already running? Stop it, or give --base-port PORT"),
            (existing, f"is the demo of {existing} already running? Stop it, or start another "),
        ):
            began = time.monotonic()
            demo = Demo(folder, "--nodes", "3", "--base-port", str(base))
            demos.append(demo)
            assert demo.wait(timeout=20) == 1, "".join(demo.output)
            assert time.monotonic() - began < 15
            assert len(demo.output) == 1, "".join(demo.output)
            assert f"port {base + 1} (node 2) is in use: {advice}" in demo.output[0]
            assert not list(folder.glob("node*.log")), "a node was started"
            assert not _nodes_of(folder)
        assert not (tmp_path / "new" / "cluster.json").exists()


def _banner_pids(demo: Demo) -> dict[int, int]:
    text = "".join(demo.output)
    return {
        int(node): int(pid) for node, pid in re.findall(r"^  node (\d+) \(pid (\d+)\):", text, re.M)
    }


def test_a_killed_node_is_restarted_by_the_demo(tmp_path: Path, demos: list[Demo]) -> None:
    """kill -9 of a PID from the banner: the other node goes on, and the demo starts the node
    again as its own child, with the admin password, so that stopping the demo stops it too."""
    folder = tmp_path / "demo"
    demo = Demo(folder, "--nodes", "2", "--base-port", str(free_port_block(2)))
    demos.append(demo)
    demo.wait_for_line("Press Ctrl-C")
    pids = _banner_pids(demo)
    assert pids == {1: demo.node_pid(1), 2: demo.node_pid(2)}, "".join(demo.output)
    os.kill(pids[1], signal.SIGKILL)
    line = demo.wait_for_line("node 1 exited", timeout=10)
    assert line == "node 1 exited (signal 9); restarting it in 2 s (Ctrl-C stops the demo)\n"
    assert _alive(pids[2])
    restarted = int(re.findall(r"pid (\d+)", demo.wait_for_line("node 1 restarted", 10))[0])
    assert restarted in demo.poll_nodes(), "the restarted node is not the demo's child"
    environ = Path(f"/proc/{restarted}/environ").read_bytes().split(b"\0")
    password = (folder / "admin-password.txt").read_text().strip()
    assert f"PAXOS_DEMO_ADMIN_PASSWORD={password}".encode() in environ
    assert (
        demo.wait_for_line("node 1 serves again", 20) == f"node 1 serves again (pid {restarted})\n"
    )
    assert demo.process.poll() is None, "".join(demo.output)
    demo.process.send_signal(signal.SIGTERM)
    assert demo.wait() == 0
    assert not [pid for pid in set(demo.nodes) | set(pids.values()) if _alive(pid)], "orphans"


def test_demo_stops_with_an_error_when_every_node_has_exited(
    tmp_path: Path, demos: list[Demo]
) -> None:
    """A node that fails soon after its restart (its port taken meanwhile) is left down; with no
    node left, the demo stops with an error."""
    port = free_port_block(1)
    demo = Demo(tmp_path / "demo", "--nodes", "1", "--base-port", str(port))
    demos.append(demo)
    demo.wait_for_line("Press Ctrl-C")
    os.kill(demo.node_pid(1), signal.SIGKILL)
    demo.wait_for_line("node 1 exited (signal 9); restarting it", timeout=10)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the TIME_WAITs
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert demo.wait() != 0
    text = "".join(demo.output)
    assert "node 1 restarted (pid " in text
    assert "node 1 exited (status 1) " in text
    assert f"after it started; not restarting it: see {tmp_path / 'demo' / 'node1.log'}" in text
    assert "every node of the demo has exited" in text
    assert "Traceback" not in text


def test_existing_demo_says_which_options_it_ignores(tmp_path: Path, demos: list[Demo]) -> None:
    folder = tmp_path / "demo"
    port = free_port_block(1)
    write_demo_config(folder, nodes=1, base_port=port, groups=(1, 2))
    demo = Demo(folder, "--nodes", "2", "--base-port", "44150")  # ignored: never bound
    demos.append(demo)
    notice = demo.wait_for_line("notice:")
    assert f"holds a demo of 1 nodes on ports {port}" in notice
    assert "--nodes 2 and --base-port 44150 ignored" in notice
    demo.wait_for_line("starting 1 nodes")
    demo.close()
    same = Demo(folder, "--nodes", "1")  # as the folder's: no notice
    demos.append(same)
    assert "notice" not in same.wait_for_line("starting 1 nodes")


def test_the_demo_writes_its_api_token_to_a_file(tmp_path: Path, demos: list[Demo]) -> None:
    """``api-token.txt`` holds the token the banner prints, alone on a line (``cluster.json``
    starts with a ``//`` comment, which ``jq`` and ``json.load`` refuse), readable by its owner
    only, as ``admin-password.txt``; the API takes it. The next start writes it again from the
    config, so it follows an edited token (and gets its mode back)."""
    folder = tmp_path / "demo"
    token_file = folder / "api-token.txt"
    port = free_port_block(1)
    for round_ in range(2):
        demo = Demo(folder, "--nodes", "1", "--base-port", str(port))
        demos.append(demo)
        line = demo.wait_for_line("API token:")
        token = token_file.read_text(encoding="utf-8").removesuffix("\n")
        assert line == f"API token:   {token}   (also in {token_file})\n"
        assert token_file.read_text(encoding="utf-8") == token + "\n" and "\n" not in token
        assert token in (folder / "cluster.json").read_text(encoding="utf-8")
        password_mode = stat.S_IMODE((folder / "admin-password.txt").stat().st_mode)
        assert stat.S_IMODE(token_file.stat().st_mode) == password_mode == 0o600
        demo.wait_for_line("Press Ctrl-C")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/status/", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        demo.process.send_signal(signal.SIGTERM)
        assert demo.wait() == 0, "".join(demo.output)
        if round_ == 0:  # a new token in the config, and a file someone made readable
            config = folder / "cluster.json"
            config.write_text(config.read_text().replace(token, "edited-token"), "utf-8")
            token_file.chmod(0o644)
    assert token == "edited-token"


def test_runserver_refuses_and_points_to_runpaxos() -> None:
    with pytest.raises(CommandError, match=r"manage.py runpaxos --demo"):
        call_command("runserver", "127.0.0.1:44180", "--noreload")  # as manage.py finds it
    done = subprocess.run(
        [sys.executable, "manage.py", "runserver", "127.0.0.1:44180"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "runpaxos --demo" in done.stderr


@pytest.mark.parametrize(("soft", "hard"), [(256, 8192), (256, 256)])
def test_a_node_raises_its_open_files_limit_and_warns_when_it_cannot(
    tmp_path: Path, soft: int, hard: int
) -> None:
    """Every connection is a file descriptor, and Linux's default soft limit is 1,024: a node
    raises it towards the hard limit at start, and warns when that is still small. (The node
    then stops at once: its port is held busy, so the test need not serve anything.)"""
    if shutil.which("prlimit") is None or resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
        pytest.skip("needs prlimit and a hard open-files limit of at least 8192")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port_block(1)))
        holder.listen()
        path = write_demo_config(tmp_path, nodes=1, base_port=holder.getsockname()[1])
        result = subprocess.run(
            ["prlimit", f"--nofile={soft}:{hard}", sys.executable, str(PROJECT / "manage.py")]
            + ["runpaxos", "--config", str(path), "--node", "1"],
            cwd=PROJECT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    raised = f"node 1: open-files limit raised from {soft} to {hard}"
    warning = f"node 1: this process may open only {soft} files"
    assert (raised in result.stderr, warning in result.stderr) == (hard > soft, hard == soft)
    assert "Traceback" not in result.stderr


def test_a_settings_mistake_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """``DATABASE_URL=sqlite://x.db`` (two slashes) is an in-memory database: every thread of a
    node would get its own, empty one. The node refuses it in one line."""
    path = write_demo_config(tmp_path, nodes=1, base_port=free_port_block(1))
    result = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "runpaxos", "--config", str(path)]
        + ["--node", "1"],
        cwd=PROJECT,
        env=clean_env() | {"DATABASE_URL": "sqlite://x.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: DATABASE_URL='sqlite://x.db' is an in-memory SQLite")
    assert "Traceback" not in result.stderr
