"""``kill -9`` of the ``runpaxos --demo`` process used to leave its nodes running, orphans holding
the demo's ports (a second ``make demo`` then refused: "is a demo already running?"). Each node is
now started with a death signal (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, kept across the
node's own re-exec), so it stops as on SIGTERM when the demo dies, however it dies.

The demo is started as ``test_runpaxos`` starts it (``Demo``); every process is stopped by PID at
the end, also when the test fails (``Demo.close`` kills any node left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from consensus.management import processes
from tests.e2e.test_runpaxos import Demo, _alive
from tests.fixtures.ports import free_port_block

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux death signal"),
]

STOP_BOUND = 15.0
"""Seconds every node may take to stop once the demo is gone (a clean stop takes about one)."""

PR_GET_PDEATHSIG = 2
REPORT_DEATH_SIGNAL = (
    "import ctypes, sys\n"
    "signum = ctypes.c_int(-1)\n"
    f"ctypes.CDLL(None).prctl({PR_GET_PDEATHSIG}, ctypes.byref(signum), 0, 0, 0)\n"
    "print(signum.value, flush=True)\n"
    "sys.stdin.read()\n"  # then wait until the test closes stdin
)


def _wait_until_gone(pids: set[int], timeout: float) -> set[int]:
    """The PIDs still alive after ``timeout`` seconds (none, as soon as none is)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if _alive(pid)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_kill_9_of_the_demo_stops_every_node(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    demo = Demo(folder, "--nodes", "3", "--base-port", str(free_port_block(3)))
    try:
        demo.wait_for_line("Press Ctrl-C")  # every node answers /healthz
        nodes = {demo.node_pid(node_id): node_id for node_id in (1, 2, 3)}
        assert all(_alive(pid) for pid in nodes)
        os.kill(demo.process.pid, signal.SIGKILL)
        assert demo.wait(timeout=10) == -signal.SIGKILL
        began = time.monotonic()
        left = _wait_until_gone(set(nodes), STOP_BOUND)
        assert not left, f"nodes {sorted(nodes[pid] for pid in left)} outlived the demo"
        took = time.monotonic() - began
        for node_id in nodes.values():  # stopped as on SIGTERM: cleanly, with its last line
            log = (folder / f"node{node_id}.log").read_text(errors="replace")
            assert f"node {node_id} stopped (" in log, f"node {node_id} ({took:.1f} s):\n{log}"
    finally:
        demo.close()  # kills, by PID, any node still alive


def _report_death_signal(preexec: object) -> tuple[subprocess.Popen[str], str]:
    """A Python child started with ``preexec``, and the death signal it reports (``""``: none,
    it stopped before it could say)."""
    child = subprocess.Popen(
        [sys.executable, "-c", REPORT_DEATH_SIGNAL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=10)


def test_a_node_child_gets_sigterm_as_death_signal_across_exec() -> None:
    """The hook runs before ``exec``: the signal must survive it (the node's re-exec, too)."""
    hook = processes.die_with_parent()
    assert hook is not None, "no death signal on Linux"
    child, reported = _report_death_signal(hook)
    try:
        assert reported == str(int(signal.SIGTERM))
    finally:
        _stop(child)


def test_a_child_whose_parent_died_before_the_hook_stops_at_once() -> None:
    """The race: the parent died between fork and ``prctl`` (no signal will ever come then). The
    hook compares ``getppid()`` with the parent it was made for, here not this process."""
    hook = processes.die_with_parent(parent_pid=os.getpid() + 1_000_000)
    assert hook is not None
    child, reported = _report_death_signal(hook)
    try:
        assert reported == ""  # never ran
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        _stop(child)


def test_no_death_signal_from_another_thread() -> None:
    """The signal comes when the *thread* that started the child ends: a child started from a
    worker thread would be stopped when that thread ends, with the demo still running."""
    hooks: list[object] = []
    worker = threading.Thread(target=lambda: hooks.append(processes.die_with_parent()))
    worker.start()
    worker.join()
    assert hooks == [None]


def test_no_death_signal_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes.sys, "platform", "darwin")
    assert processes.die_with_parent() is None
