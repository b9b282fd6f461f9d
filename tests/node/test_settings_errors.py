"""Mistakes in the environment a node's settings read (``DATABASE_URL``, ``PAXOS_*``) and in
``runpaxos --demo --data-dir``: each is one ``error:`` line (manage.py's
``load_settings_or_exit``) or one ``CommandError:`` line, status 1, never a traceback.

Settings are read once per process, so each case runs ``manage.py`` in a fresh interpreter; every
one of them fails while settings load (or before the demo starts), so each takes about a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.config import write_demo_config
from tests.fixtures.procs import assert_one_line, manage


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("garbage", "DATABASE_URL is not a database URL (no scheme://)"),
        ("mysql://paxos@127.0.0.1/paxos", "DATABASE_URL: the scheme mysql:// is not supported"),
    ],
)
def test_a_database_url_of_another_engine_is_refused(
    tmp_path: Path, url: str, problem: str
) -> None:
    config = write_demo_config(tmp_path, nodes=1)
    result = manage("check", DATABASE_URL=url, PAXOS_CONFIG=str(config), PAXOS_NODE_ID="1")
    assert_one_line(result, f"error: {problem}; only postgres:// and sqlite:// URLs are supported")


def test_a_database_url_placeholder_other_than_node_id_is_refused() -> None:
    """``{nodeid}`` would name a database literally ``paxos_{nodeid}``, shared by every node."""
    result = manage("check", DATABASE_URL="postgres://paxos@127.0.0.1:5432/paxos_{nodeid}")
    assert_one_line(
        result, "error: DATABASE_URL has the placeholder {nodeid}: {node_id} is the only one"
    )


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PAXOS_MAX_BODY_BYTES", "abc", "is not an integer"),
        ("PAXOS_MAX_KEY_BYTES", "1k", "is not an integer"),
        ("PAXOS_MAX_VALUE_BYTES", "2.5", "is not an integer"),
        ("PAXOS_PRUNE_INTERVAL", "soon", "is not a number"),
        ("PAXOS_REQUEST_RESULT_TTL", "1d", "is not an integer"),
        ("PAXOS_REQUEST_RESULT_MAX", "many", "is not an integer"),
    ],
)
def test_a_numeric_setting_that_is_not_a_number_is_refused(
    name: str, value: str, problem: str
) -> None:
    assert_one_line(manage("check", **{name: value}), f"error: {name}={value!r} {problem}")


def test_an_unknown_read_mode_is_refused() -> None:
    """It used to fall back to "index" silently."""
    assert_one_line(
        manage("check", PAXOS_READ_MODE="foo"),
        "error: PAXOS_READ_MODE='foo' is not a read mode: use index (the default) or log",
    )


def test_a_node_id_without_a_config_is_refused() -> None:
    """Without PAXOS_CONFIG the settings fall back to the dev ./db.sqlite3: ``createsuperuser``
    for node 1 would fail there with "no such table" (or create the user in the wrong place).
    (PAXOS_CONFIG alone is fine: the file's ``myid`` names the node.)"""
    assert_one_line(
        manage("createsuperuser", "--noinput", PAXOS_NODE_ID="1"),
        "error: PAXOS_NODE_ID=1 is set without PAXOS_CONFIG: set both together",
    )


def test_a_sqlite_database_url_in_a_missing_folder_is_refused_for_a_node(tmp_path: Path) -> None:
    folder = tmp_path / "missing" / "x"
    url = f"sqlite:///{folder}/node{{node_id}}.sqlite3"
    config = write_demo_config(tmp_path, nodes=1)
    result = manage("check", DATABASE_URL=url, PAXOS_CONFIG=str(config), PAXOS_NODE_ID="1")
    assert_one_line(
        result,
        f"error: DATABASE_URL names a SQLite file but the folder {folder} does not exist",
    )
    # Not a node: --help, collectstatic... may run where the folder is not mounted yet.
    assert manage("check", DATABASE_URL=url).returncode == 0


def test_runpaxos_may_find_paxos_node_id_in_its_environment(tmp_path: Path) -> None:
    """Only other commands are refused it without PAXOS_CONFIG (they would silently use the
    development database): runpaxos sets both itself, and a service unit may export it."""
    result = manage("runpaxos", "--help", PAXOS_NODE_ID="1")
    assert result.returncode == 0, result.stderr
    refused = manage("createsuperuser", "--noinput", PAXOS_NODE_ID="1")
    assert_one_line(refused, "error: PAXOS_NODE_ID=1 is set without PAXOS_CONFIG")


def test_a_demo_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not a folder\n")
    assert_one_line(
        manage("runpaxos", "--demo", "--data-dir", str(file)),
        f"CommandError: --data-dir {file} is a file, not a folder",
    )
    assert_one_line(
        manage("runpaxos", "--demo", "--data-dir", str(file / "demo")),
        f"CommandError: --data-dir {file / 'demo'} is in {file}, a file, not a folder",
    )
    assert file.read_text() == "not a folder\n"


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("PAXOS_DIGEST_WINDOW=-5", "PAXOS_DIGEST_WINDOW=-5 is negative"),
        ("PAXOS_DIGEST_WINDOW=1.5", "PAXOS_DIGEST_WINDOW='1.5' is not an integer"),
        ("PAXOS_STATE_CHECK_INTERVAL=nan", "PAXOS_STATE_CHECK_INTERVAL=nan is not a number of"),
        ("PAXOS_STATE_CHECK_INTERVAL=inf", "PAXOS_STATE_CHECK_INTERVAL=inf is not a number of"),
        ("PAXOS_STATE_CHECK_INTERVAL=-1", "PAXOS_STATE_CHECK_INTERVAL=-1.0 is not a number of"),
    ],
)
def test_a_digest_setting_out_of_range_is_refused(setting: str, problem: str) -> None:
    """A negative window used to turn the comparison off without a word, NaN the checks."""
    name, value = setting.split("=")
    assert_one_line(manage("check", **{name: value}), problem)
