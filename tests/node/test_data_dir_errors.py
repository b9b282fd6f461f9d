"""A ``dataDir`` the node cannot create or look into is one line naming the path and the
system's reason, status 1, never a traceback: it used to end in ``FileNotFoundError`` (as root,
``"dataDir": "/proc/nope"``: the settings' ``mkdir``) or ``PermissionError`` (as a user, a
``dataDir`` under ``/root``: ``exists()`` in the config's ``data_path`` raises it on 3.11).

Tests run as root here, and root may enter any folder: the subprocess cases use paths that fail
for root too (``/proc`` refuses new folders; a name longer than the system allows); a folder
this user may not enter is simulated in-process.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from consensus.config import ConfigError, load_config, write_demo_config
from tests.fixtures.procs import assert_one_line, manage


def config_with_data_dir(tmp_path: Path, data_dir: str) -> Path:
    path = write_demo_config(tmp_path, nodes=1, base_port=None)
    document = json.loads(path.read_text().split("\n", 1)[1])  # after the // comment line
    path.write_text(json.dumps(document | {"dataDir": data_dir}))
    return path


@pytest.mark.parametrize(
    ("data_dir", "problem"),
    [
        ("/proc/nope", "cannot create /proc/nope: no such file or directory"),
        ("/proc/nope/data", "cannot create /proc/nope/data: /proc/nope: no such file or directory"),
    ],
)
def test_a_data_dir_that_cannot_be_created_is_one_line(
    tmp_path: Path, data_dir: str, problem: str
) -> None:
    config = config_with_data_dir(tmp_path, data_dir)
    result = manage("runpaxos", "--config", str(config))
    assert_one_line(result, f"error: {config}: dataDir: {problem}")
    # The settings of other commands create it too (PAXOS_CONFIG names the node's config).
    assert_one_line(
        manage("check", PAXOS_CONFIG=str(config), PAXOS_NODE_ID="1"),
        f"error: {config}: dataDir: {problem}",
    )


def test_a_data_dir_the_system_cannot_look_at_is_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / ("x" * 300) / "data"  # a name longer than the system allows
    config = config_with_data_dir(tmp_path, str(data_dir))
    assert_one_line(
        manage("runpaxos", "--config", str(config)),
        f"CommandError: {config}: dataDir: cannot access {data_dir}: file name too long",
    )
    assert_one_line(
        manage("check", PAXOS_CONFIG=str(config), PAXOS_NODE_ID="1"),
        f"error: {config}: dataDir: cannot access {data_dir}: file name too long",
    )


def test_a_data_dir_in_a_folder_this_user_may_not_enter_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user who is not root gets for a ``dataDir`` under ``/root``: ``exists()`` raises
    ``PermissionError`` for anything inside a folder the user may not enter."""
    locked = tmp_path / "locked"
    data_dir = locked / "data"
    config = config_with_data_dir(tmp_path, str(data_dir))
    exists = Path.exists

    def refusing_exists(path: Path) -> bool:
        if locked in path.parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return exists(path)

    monkeypatch.setattr(Path, "exists", refusing_exists)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert str(refused.value) == (f"{config}: dataDir: cannot access {data_dir}: permission denied")
