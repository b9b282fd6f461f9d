"""The example files users copy (examples/systemd): they must stay valid as the code changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.procs import PROJECT, run_manage

UNIT = PROJECT / "examples" / "systemd" / "paxos@.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_unit_has_only_keys_systemd_knows(tmp_path: Path) -> None:
    copy = tmp_path / "paxos@1.service"  # an instance, so %i expands
    copy.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "Unknown" in line or "Invalid" in line or "Failed to parse" in line
    ]
    assert not problems, problems  # (its ExecStart path does not exist here: not checked)


def test_the_systemd_unit_starts_runpaxos_with_options_it_has() -> None:
    exec_start = next(
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    words = exec_start.split()
    assert words[1:3] == ["manage.py", "runpaxos"], words
    options = [word for word in words if word.startswith("--")]
    usage = run_manage("runpaxos", "--help").stdout
    assert options and all(option in usage for option in options), (options, usage)
