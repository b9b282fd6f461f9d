"""Bad input a reviewer found ending in a traceback, a silently ignored option, or a node that
starts and never works: each is now one line naming the file or option and what to do.

A null byte in ``dataDir`` (``ValueError: embedded null byte``), a deeply nested config
(``RecursionError``), a number of 5000 digits (``ValueError``), ``timeout`` 1e30 (no leader, ever),
``localhost:P`` beside ``127.0.0.1:P`` (a node that dials itself), a second ``"myid"`` (the last
one won), ``--request-timeout nan`` (a 500 for every request), ``--data-dir`` without ``--demo``
(ignored), a ``dataDir`` the node may not write to (SQLite's "unable to open database file"
with a hint about shared databases that did not apply), a named pipe as ``--config`` (the node
hung in ``open``; ``/dev/zero`` was read for ever) and a config file of gigabytes (read whole).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from consensus.config import (
    MAX_CONFIG_BYTES,
    MAX_MILLISECONDS,
    ConfigError,
    load_config,
    write_demo_config,
)
from consensus.management import demo
from consensus.management.commands import runpaxos
from consensus.management.commands.runpaxos import Command, _database_problem
from tests.fixtures.procs import assert_one_line, clean_env, manage, run_manage


def demo_document(tmp_path: Path) -> dict[str, Any]:
    """A valid one-node config (free port, fresh secret), as a dict to spoil."""
    path = write_demo_config(tmp_path, nodes=1, base_port=None)
    return json.loads(path.read_text().split("\n", 1)[1])  # after the // comment line


def write_config(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value)


# --- 1. a null byte in dataDir ---------------------------------------------------------------


def test_a_null_byte_in_the_data_dir_is_a_bad_data_dir(tmp_path: Path) -> None:
    config = write_config(tmp_path, demo_document(tmp_path) | {"dataDir": "/tmp/a\u0000b"})
    expected = f"{config}: dataDir: contains a null character"
    assert refused(config).startswith(expected)
    assert_one_line(manage("runpaxos", "--config", str(config)), f"CommandError: {expected}")
    # Settings load the config for every command that names it.
    assert_one_line(manage("paxos", "status", PAXOS_CONFIG=str(config)), f"error: {expected}")


# --- 2. JSON the parser gives up on -----------------------------------------------------------

DIGITS = '{"timeout": ' + "1" * 5000 + "}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[" * 100_000, "nested too deeply", id="deep"),
        pytest.param(DIGITS, "a number has too many digits", id="digits"),
    ],
)
def test_json_the_parser_gives_up_on_is_invalid_json(
    tmp_path: Path, text: str, problem: str
) -> None:
    config = write_config(tmp_path, text)
    expected = f"{config}: invalid JSON: {problem}"
    assert refused(config).startswith(expected)
    assert_one_line(manage("runpaxos", "--config", str(config)), expected)


# --- 4. timeouts of absurd size ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["timeout", "learningInterval"])
def test_a_timeout_longer_than_an_hour_is_refused(tmp_path: Path, key: str) -> None:
    document = demo_document(tmp_path)
    config = write_config(tmp_path, document | {key: 10**30})
    message = refused(config)
    assert message.startswith(f"{config}: {key}: ")
    assert "more than an hour: give at most 3600000 milliseconds" in message
    # 31 digits are shortened, as thousands would be (the path's length is the test's)
    assert len(message) - len(str(config)) < 150 and "(31 digits)" in message
    at_most = write_config(tmp_path, document | {key: MAX_MILLISECONDS})
    loaded = load_config(at_most)  # an hour itself is still accepted
    assert MAX_MILLISECONDS in (loaded.timeout_ms, loaded.learning_interval_ms)


# --- 7. one machine under two names; a key given twice ----------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("localhost", "127.0.0.1"),
        ("127.0.0.1", "::1"),
        ("::1", "LocalHost."),
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
def test_two_nodes_on_one_loopback_port_are_refused(
    tmp_path: Path, first: str, second: str
) -> None:
    document = demo_document(tmp_path)
    port = document["nodes"][0]["port"]
    document["nodes"] = [
        {"id": 1, "host": first, "port": port},
        {"id": 2, "host": second, "port": port},
    ]
    message = refused(write_config(tmp_path, document))
    assert f"nodes[1]: duplicate address {second}:{port} (also used by node 1 as " in message
    assert "all name this machine" in message


def test_other_loopback_addresses_and_ports_are_distinct(tmp_path: Path) -> None:
    document = demo_document(tmp_path)
    port = document["nodes"][0]["port"]
    document["nodes"] = [
        {"id": 1, "host": "localhost", "port": port},
        {"id": 2, "host": "127.0.0.2", "port": port},  # another address of lo: its own socket
        {"id": 3, "host": "127.0.0.1", "port": port + 1},
    ]
    assert len(load_config(write_config(tmp_path, document)).nodes) == 3


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param('"myid": 1, "myid": 2', "myid", id="top-level"),
        pytest.param('"x": [{"id": 1, "id": 2}]', "id", id="nested"),
    ],
)
def test_a_key_given_twice_is_refused(tmp_path: Path, text: str, key: str) -> None:
    config = write_config(tmp_path, "{" + text + "}")
    assert refused(config) == (
        f'{config}: invalid config: the key "{key}" appears twice in one object (the last one '
        "would win silently): keep one"
    )


# --- 3. --request-timeout and --tick-ms -------------------------------------------------------


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """``call_command("runpaxos")`` in this process must be refused before it starts anything:
    a node would ``exec`` over the test process, and a demo would start nodes."""

    def start(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("runpaxos went on to start a node or a demo")

    monkeypatch.setattr(runpaxos, "load_config", start)
    monkeypatch.setattr(demo, "run_demo", start)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "3601", "1e300"])
def test_a_request_timeout_that_is_no_number_of_seconds_is_refused(
    tmp_path: Path, nothing_starts: None, value: str
) -> None:
    config = write_config(tmp_path, demo_document(tmp_path))
    with pytest.raises(CommandError, match=r"^--request-timeout must be a number of seconds"):
        call_command("runpaxos", "--config", str(config), f"--request-timeout={value}")


def test_request_timeout_nan_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, demo_document(tmp_path))
    assert_one_line(
        manage("runpaxos", "--config", str(config), "--request-timeout", "nan"),
        "--request-timeout must be a number of seconds above 0 and at most 3600 (an hour), not nan",
    )


@pytest.mark.parametrize("value", ["0", "1001", str(10**12)])
def test_a_tick_out_of_range_is_refused(tmp_path: Path, nothing_starts: None, value: str) -> None:
    config = write_config(tmp_path, demo_document(tmp_path))
    with pytest.raises(CommandError, match=r"^--tick-ms must be between 1 and 1000 milliseconds"):
        call_command("runpaxos", "--config", str(config), "--tick-ms", value)


# --- 6. options of the other mode -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["--data-dir", "elsewhere"], "--data-dir applies"),
        (["--nodes", "5", "--base-port", "40000"], "--nodes and --base-port apply"),
    ],
)
def test_demo_options_without_demo_are_refused(
    tmp_path: Path, nothing_starts: None, args: list[str], given: str
) -> None:
    config = write_config(tmp_path, demo_document(tmp_path))
    with pytest.raises(CommandError, match=rf"^{given} only with --demo"):
        call_command("runpaxos", "--config", str(config), *args)


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["--config", "cluster.json"], "--config applies"),
        (["--node", "2", "--tick-ms", "5"], "--node and --tick-ms apply"),
        (["--request-timeout", "9"], "--request-timeout applies"),
    ],
)
def test_node_options_with_demo_are_refused(
    tmp_path: Path, nothing_starts: None, args: list[str], given: str
) -> None:
    folder = tmp_path / "demo"
    with pytest.raises(CommandError, match=rf"^{given} to one node, not to --demo"):
        call_command("runpaxos", "--demo", "--data-dir", str(folder), *args)
    assert not folder.exists()  # refused before the demo wrote anything


def test_data_dir_without_demo_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, demo_document(tmp_path))
    assert_one_line(
        manage("runpaxos", "--config", str(config), "--data-dir", str(tmp_path / "x")),
        "CommandError: --data-dir applies only with --demo",
    )


def test_help_marks_the_demo_options() -> None:
    parser = Command().create_parser("manage.py", "runpaxos")
    helps = {action.dest: action.help or "" for action in parser._actions}
    for dest in ("nodes", "data_dir", "base_port"):
        assert helps[dest].startswith("(with --demo)"), helps[dest]
    assert "--config, --node, --tick-ms and --request-timeout only without it" in " ".join(
        (parser.description or "").split()
    )


# --- 5. a data folder the node may not write to -----------------------------------------------


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """``path`` (a folder or file that exists) made unwritable, even for root: ``chattr +i``
    (root ignores permission bits), ``chmod`` for another user; undone afterwards."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr to make a folder read-only for root")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip(f"this file system does not take chattr +i ({path})")
    try:
        assert not os.access(path, os.W_OK)
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("what", ["folder", "database file"])
def test_a_data_dir_the_node_may_not_write_is_named(tmp_path: Path, what: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path, demo_document(tmp_path) | {"dataDir": str(data)})
    target = data if what == "folder" else data / "node1.sqlite3"
    target.touch()
    with unwritable(target):
        result = manage("runpaxos", "--config", str(config))
    assert_one_line(
        result,
        f"CommandError: {config}: dataDir: the {what} {target} is not writable (node 1 keeps its "
        "database there): make it writable for this user, or give another dataDir",
    )
    assert "If several nodes use one database" not in result.stderr


def test_a_sqlite_database_url_in_a_folder_the_node_may_not_write_is_named(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    config = write_config(tmp_path, demo_document(tmp_path))
    with unwritable(folder):
        result = manage(
            "runpaxos",
            "--config",
            str(config),
            DATABASE_URL=f"sqlite:///{folder}/node{{node_id}}.sqlite3",
        )
    assert_one_line(
        result,
        f"CommandError: DATABASE_URL names the SQLite file {folder / 'node1.sqlite3'}, but the "
        f"folder {folder} is not writable",
    )


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        (None, False),
        ("postgres://db/paxos_{node_id}", False),
        ("postgres://db/paxos", True),
    ],
)
def test_the_shared_database_hint_only_comes_with_a_shared_url(
    tmp_path: Path, url: str | None, hint: bool
) -> None:
    config = load_config(write_config(tmp_path, demo_document(tmp_path)))
    problem = _database_problem(config, url, Exception("unable to open database file"))
    assert problem.startswith("node 1 could not prepare its database ")
    assert ("If several nodes use one database" in problem) is hint


# --- 8. a named pipe, a device or a folder as the config --------------------------------------


def _special(tmp_path: Path, kind: str) -> Path:
    """A path that is not a regular file: opening a FIFO for reading blocks until a writer comes
    (the node hung, silently), /dev/zero never ends, /dev/null reads as an empty config."""
    if kind == "fifo":
        path = tmp_path / "cluster.json"
        os.mkfifo(path)
        return path
    if kind == "folder":
        return tmp_path
    device = Path(kind)
    if not device.exists():
        pytest.skip(f"no {device} here")
    return device


NOT_A_FILE = {
    "fifo": "is a named pipe (FIFO), not a config file",
    "/dev/zero": "is a character device, not a config file",
    "/dev/null": "is a character device, not a config file",
    "folder": "is a folder, not a config file",
}


@pytest.mark.timeout(20)  # a FIFO used to block in open() for ever
@pytest.mark.parametrize("kind", list(NOT_A_FILE))
def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = _special(tmp_path, kind)
    message = refused(path)
    assert message.startswith(f"{path}: {NOT_A_FILE[kind]}"), message
    assert "\n" not in message


def test_a_fifo_as_config_is_one_line_not_a_hang(tmp_path: Path) -> None:
    """Before the node, and before any command that names it in PAXOS_CONFIG (settings load the
    config): one line, status 1, at once."""
    fifo = _special(tmp_path, "fifo")
    expected = f"{fifo}: {NOT_A_FILE['fifo']}"
    node = run_manage("runpaxos", "--config", str(fifo), env=clean_env(), timeout=30)
    assert_one_line(node, f"CommandError: {expected}")
    status = run_manage(
        "paxos", "status", env=clean_env() | {"PAXOS_CONFIG": str(fifo)}, timeout=30
    )
    assert_one_line(status, f"error: {expected}")


def test_a_symlink_to_a_config_file_is_still_read(tmp_path: Path) -> None:
    config = write_config(tmp_path, demo_document(tmp_path))
    link = tmp_path / "link.json"
    link.symlink_to(config)
    assert load_config(link).path == link


# --- 9. a config file of absurd size ----------------------------------------------------------


def test_a_config_file_larger_than_a_mebibyte_is_refused(tmp_path: Path) -> None:
    text = json.dumps(demo_document(tmp_path))
    at_most = write_config(tmp_path, text + " " * (MAX_CONFIG_BYTES - len(text)))
    assert at_most.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(at_most).my_id == 1  # the bound itself is still read
    too_large = write_config(tmp_path, text + " " * (MAX_CONFIG_BYTES + 1 - len(text)))
    assert refused(too_large) == (
        f"{too_large}: config file too large: {MAX_CONFIG_BYTES + 1:,} bytes, a config file "
        f"has at most 1 MiB ({MAX_CONFIG_BYTES:,} bytes): is this the right file?"
    )
