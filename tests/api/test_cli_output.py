"""What ``manage.py paxos`` prints and how it exits: a value (``get``, and a result that is a
string) as its UTF-8 bytes and nothing else when standard output is no terminal, so that
``get k > file`` gives back what ``put k - < file`` stored (Django's ``write`` added a newline,
and the locale's encoding chose the bytes); on a terminal a newline after it unless it ends with
one. And ``submit`` exits 1 when the state machine's result is an error (``{"error": ...}``),
printing the result all the same (it exited 0).

Stand-in nodes (``tests.fixtures.http``) in-process, the real command line (a fresh
``manage.py`` with a pipe or a terminal as its standard output) against them, and the shared
cluster for the round trip through a real node."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tty
import uuid
from pathlib import Path

import pytest

from tests.api.test_cli_bad_input import error_line, run
from tests.api.test_cli_stdin import paxos_cli
from tests.fixtures.cluster import Cluster
from tests.fixtures.http import answering_nodes
from tests.fixtures.procs import PROJECT, clean_env

VALUES = {
    "no-newline": "Mike",
    "one-newline": "Mike\n",
    "two-newlines": "Mike\n\n",
    "empty": "",
    "crlf-and-unicode": "h\u00e9llo\r\nw\u00f6rld \u20ac \U0001f600",
}


def kv_answer(value: str) -> dict[str, object]:
    """A node's answer to ``GET /api/kv/1/k``."""
    return {"key": "k", "value": value, "instance": 3, "consistency": "linearizable"}


def submit_answer(result: object) -> dict[str, object]:
    """A node's answer to ``POST /api/groups/1/commands/``."""
    return {"instance": 7, "request_id": "rid-1", "result": result, "duplicate": False}


# 1. a value as it is


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_get_prints_the_value_as_it_is_when_output_is_no_terminal(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Not a byte more: a newline was added to every value that did not end with one."""
    with answering_nodes(kv_answer(value)) as [url]:
        code, out, err = run(capsys, "--url", url, "--token", "t", "get", "k")
    assert (code, err) == (0, "")
    assert out == value


@pytest.mark.parametrize("value", ["ok", "two\nlines", ""])
@pytest.mark.parametrize("action", ["submit", "query"])
def test_a_result_that_is_a_string_is_printed_as_get_prints_a_value(
    capsys: pytest.CaptureFixture[str], action: str, value: str
) -> None:
    """The seed's callback answers ``get`` with the value itself: the same bytes as ``get``."""
    answer = submit_answer(value) | {"consistency": "linearizable"}
    with answering_nodes(answer) as [url]:
        code, out, err = run(capsys, "--url", url, "--token", "t", action, "{}")
    assert (code, err) == (0, "")
    assert out == value


def test_json_output_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON is a line of text: it ends with a newline, value or not."""
    with answering_nodes(kv_answer("Mike")) as [url]:
        code, out, _ = run(capsys, "--url", url, "--token", "t", "--json", "get", "k")
        assert (code, json.loads(out), out[-2:]) == (0, {"key": "k", "value": "Mike"}, "}\n")
    with answering_nodes(submit_answer({"key": "k", "value": "v"})) as [url]:
        code, out, _ = run(capsys, "--url", url, "--token", "t", "submit", "{}")
    assert (code, out) == (0, '{"key": "k", "value": "v"}\n')


def test_the_real_command_line_writes_utf8_whatever_the_locale_says() -> None:
    """A pipe as standard output, and an encoding for it that is no UTF-8: the value's UTF-8
    bytes (it failed with a UnicodeEncodeError traceback on the euro sign)."""
    value = VALUES["crlf-and-unicode"]
    with answering_nodes(kv_answer(value)) as [url]:
        result = subprocess.run(
            [sys.executable, str(PROJECT / "manage.py"), "paxos", "--url", url, "get", "k"],
            cwd=PROJECT,
            env=clean_env() | {"PYTHONIOENCODING": "latin-1", "PAXOS_API_TOKEN": "t"},
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == value.encode()


def on_a_terminal(*args: str) -> bytes:
    """What ``manage.py paxos ARGS`` writes to a terminal (a pseudo-terminal in raw mode: no
    newline translation), read until the command closes it."""
    leader, follower = pty.openpty()
    tty.setraw(follower)
    try:
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, str(PROJECT / "manage.py"), "paxos", *args],
            cwd=PROJECT,
            env=clean_env() | {"PAXOS_API_TOKEN": "t"},
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(follower)
    output = b""
    try:
        while chunk := os.read(leader, 65536):
            output += chunk
    except OSError:  # EIO: the terminal's last writer closed it
        pass
    finally:
        os.close(leader)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    return output


@pytest.mark.parametrize(
    ("value", "shown"),
    [("Mike", b"Mike\n"), ("Mike\n", b"Mike\n"), ("", b"\n"), ("a\n\n", b"a\n\n")],
)
def test_on_a_terminal_a_newline_follows_a_value_without_one(value: str, shown: bytes) -> None:
    """So that the shell's prompt starts a line of its own; never a second one."""
    with answering_nodes(kv_answer(value)) as [url]:
        assert on_a_terminal("--url", url, "get", "k") == shown


# 2. submit: an error result exits 1


ERROR = {"error": "not JSON: unexpected character: line 1 column 1 (char 0)"}


def test_submit_exits_1_when_the_result_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """The result on standard output as ever, and one line on standard error saying that the
    command was applied and what a retry with its request id gets."""
    with answering_nodes(submit_answer(ERROR)) as [url]:
        code, out, err = run(capsys, "--url", url, "--token", "t", "submit", "nope")
        assert (code, json.loads(out)) == (1, ERROR)
        assert len(err.strip().splitlines()) == 1, err
        assert error_line(err) == (
            f"CommandError: the state machine's result is an error: {ERROR['error']!r} (the "
            "command was applied, in instance 7 of group 1: a retry with --request-id rid-1 "
            "gets the same error)"
        )
        code, out, _ = run(capsys, "--url", url, "--token", "t", "--json", "submit", "nope")
    assert (code, json.loads(out)) == (1, submit_answer(ERROR))


@pytest.mark.parametrize(
    "result",
    [{"key": "k", "value": "v"}, "ok", None, ["error"], {"errors": 1}, {"error": None, "n": 1}],
    ids=["dict", "string", "null", "list", "other-key", "error-null"],
)
def test_submit_exits_0_for_any_other_result(
    capsys: pytest.CaptureFixture[str], result: object
) -> None:
    """Only ``{"error": ...}`` says no, as the runtime and the KV store say it."""
    with answering_nodes(submit_answer(result)) as [url]:
        code, _, err = run(capsys, "--url", url, "--token", "t", "submit", "{}")
    assert (code, err) == (0, "")


# 3. through a real node


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.e2e
def test_get_gives_back_what_put_stored_byte_for_byte(
    shared_cluster: Cluster, tmp_path: Path
) -> None:
    """``put k - < file``, ``get k > copy``: the same bytes (a newline was added to the copy)."""
    config = ["--config", str(shared_cluster.config_path)]
    key = unique("roundtrip")
    stored = ("line \u00e9\u20ac\U0001f600\r\n" * 5000).encode() + b"\n\n  no newline at the end"
    put = paxos_cli(*config, "put", key, "-", stdin=stored)
    assert put.returncode == 0, put.stderr
    copy = tmp_path / "copy"
    with copy.open("wb") as out:
        get = subprocess.run(
            [sys.executable, str(PROJECT / "manage.py"), "paxos", *config, "get", key],
            cwd=PROJECT,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert get.returncode == 0, get.stderr
    assert copy.read_bytes() == stored


@pytest.mark.e2e
def test_submit_of_a_command_the_state_machine_refuses_exits_1(shared_cluster: Cluster) -> None:
    """The KV store answers text that is no JSON with ``{"error": ...}``: applied, an error."""
    config = ["--config", str(shared_cluster.config_path)]
    submit = paxos_cli(*config, "submit", "this is no JSON", "--request-id", unique("bad"))
    assert submit.returncode == 1, submit.stderr
    assert json.loads(submit.stdout)["error"].startswith("not JSON")
    stderr = submit.stderr.decode()
    assert "the state machine's result is an error" in stderr and len(stderr.splitlines()) == 1
    good = json.dumps({"type": "put", "key": unique("ok"), "value": "v"})
    assert paxos_cli(*config, "submit", good).returncode == 0
