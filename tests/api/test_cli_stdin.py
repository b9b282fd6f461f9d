"""``manage.py paxos`` reading a value from standard input (``put k -``, ``cas``'s VALUE or
``--expected``, ``submit -``): the bytes as they are, decoded as UTF-8; one ``-`` per call; a
value too large for one command-line argument; the node's 413 for one too large for the node.
And what it says when ``--url`` is an HTTP server that is no Paxos node (a plain
``python -m http.server``, an HTML page): one line naming the URL, the status, the content type
and the start of the body, never the whole page.

Stand-in nodes (``tests.fixtures.http``) in-process; the real command line (a fresh
``manage.py`` with a real pipe on its standard input) against the shared cluster."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import uuid
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.api.test_cli_bad_input import dead_url, error_line, run
from tests.api.test_cli_request_ids import RecordingNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.http import http_nodes
from tests.fixtures.procs import PROJECT, assert_one_line, clean_env


def give_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """The command's standard input: ``data``, as a pipe delivers it (bytes under a text
    stream)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def paxos_cli(*args: str, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    """``manage.py paxos ARGS`` in a fresh interpreter with ``stdin`` piped in; killed (by its
    PID, ``subprocess.run``) if it outlives ``timeout``."""
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "paxos", *args],
        cwd=PROJECT,
        env=clean_env(),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


# 1. "-" reads the argument from standard input

# (arguments, where the stdin text lands in the recorded body, what the rest of it is)
FROM_STDIN = {
    "put VALUE": (["put", "k", "-"], "value", {}),
    "cas VALUE": (["cas", "k", "-", "--expected", "old"], "value", {"expected": "old"}),
    "cas --expected": (["cas", "k", "new", "--expected", "-"], "expected", {"value": "new"}),
    "cas --expected=-": (["cas", "k", "new", "--expected=-"], "expected", {"value": "new"}),
    "submit COMMAND": (["submit", "-", "-g", "2"], "command", {}),
}


@pytest.mark.parametrize(
    "data",
    [b"h\xc3\xa9llo\n  w\xc3\xb6rld\r\n\n", b"-", b""],
    ids=["text-with-newlines", "a-literal-dash", "empty"],
)
@pytest.mark.parametrize("where", FROM_STDIN)
def test_a_dash_sends_standard_input_as_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str, data: bytes
) -> None:
    """Byte for byte, decoded as UTF-8: a trailing newline (echo's) stays, so does "\\r";
    a literal "-" goes through standard input."""
    arguments, field, rest = FROM_STDIN[where]
    give_stdin(monkeypatch, data)
    with http_nodes(1, RecordingNode) as [server]:
        server.seen, server.status = [], 200  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", url, "--token", "t", *arguments)
        assert code == 0, err
        [(_method, _path, body, _request_id)] = server.seen  # type: ignore[attr-defined]
    assert body == {field: data.decode(), **rest}


def test_a_dash_as_a_key_is_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only VALUE, --expected and COMMAND read standard input (here reading it would fail)."""
    monkeypatch.setattr(sys, "stdin", None)
    with http_nodes(1, RecordingNode) as [server]:
        server.seen, server.status = [], 200  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", url, "--token", "t", "put", "-", "v")
        assert code == 0, err
        [(_method, path, body, _request_id)] = server.seen  # type: ignore[attr-defined]
    assert (path, body) == ("/api/kv/1/-", {"value": "v"})


def test_only_one_argument_may_be_a_dash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before anything is sent (a dead URL would be a connection refused, exit 1)."""
    give_stdin(monkeypatch, b"v")
    code, _, err = run(capsys, "--url", dead_url(), "cas", "k", "-", "--expected", "-")
    assert (code, error_line(err)) == (
        2,
        "CommandError: only one argument may be '-' (read from standard input), not both "
        "VALUE and --expected",
    )


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        (["put", "k", "-"], "VALUE"),
        (["cas", "k", "-", "--absent"], "VALUE"),
        (["cas", "k", "v", "--expected", "-"], "--expected"),
        (["submit", "-"], "COMMAND"),
    ],
)
def test_standard_input_that_is_no_utf8_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    name: str,
) -> None:
    give_stdin(monkeypatch, b"ok \xff\xfe")
    code, _, err = run(capsys, "--url", dead_url(), *arguments)
    assert (code, error_line(err)) == (
        2,
        f"CommandError: argument {name}: standard input is not valid UTF-8 (byte 0xff at "
        "position 3)",
    )


def test_no_standard_input_at_all_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed descriptor 0 (``<&-``): Python's ``sys.stdin`` is None."""
    monkeypatch.setattr(sys, "stdin", None)
    code, _, err = run(capsys, "--url", dead_url(), "put", "k", "-")
    assert code == 2
    assert error_line(err).startswith("CommandError: argument VALUE: ") and "standard input" in err


def test_standard_input_is_read_up_to_a_bound(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``put k - < /dev/zero`` read until memory ran out."""
    from consensus.management.commands import paxos

    monkeypatch.setattr(paxos, "MAX_STDIN_BYTES", 1000)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\0" * 1001)))
    code, _, err = run(capsys, "--url", dead_url(), "put", "k", "-")
    assert code == 2
    assert error_line(err).startswith("CommandError: argument VALUE: standard input is larger ")


@pytest.mark.parametrize("where", FROM_STDIN)
def test_the_retry_command_of_a_value_from_standard_input_reads_it_again(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A write of unknown outcome prints the command that retries it: with "-" and a note to
    pipe the same input again, not the value (which may be megabytes); run with it, it sends
    the same write."""
    arguments, _field, _rest = FROM_STDIN[where]
    value = "the value " * 2000
    with http_nodes(1, RecordingNode) as [server]:
        server.seen, server.status = [], 503  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        give_stdin(monkeypatch, value.encode())
        with pytest.raises(CommandError) as raised:
            call_command("paxos", "--url", url, "--token", "t", "--timeout", "0.3", *arguments)
        message = str(raised.value)
        assert "the value" not in message and len(message) < 600, message
        assert message.endswith(" (with your token for TOKEN, and the same standard input)"), (
            message
        )
        command = message.split(" to apply it at most once: ", 1)[1].rsplit(" (with ", 1)[0]
        words = shlex.split(command)
        assert words[-1] == "-" or "--expected=-" in words, words

        server.status = 200  # type: ignore[attr-defined]
        words[words.index("TOKEN")] = "secret"
        give_stdin(monkeypatch, value.encode())
        call_command(*words[2:])
        attempts = server.seen  # type: ignore[attr-defined]
        assert attempts[-1] == attempts[0]


# 2. a server that is no Paxos node


class PlainFiles(SimpleHTTPRequestHandler):
    """``python -m http.server``, serving its server's ``directory``."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        super().__init__(request, client_address, server, directory=server.directory)

    def log_message(self, *args: object) -> None:
        pass


HTML_PAGE = (
    "<!DOCTYPE html>\n<html>\x1b[31m\u2028<body>Welcome to nginx!\t" + "x" * 200 + "THE END</body>"
)


class HtmlPage(BaseHTTPRequestHandler):
    """Any request: the server's ``status`` with ``HTML_PAGE`` (a proxy's or a web site's)."""

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        page = HTML_PAGE.encode()
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = do_POST = do_PUT = do_DELETE = answer  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


ACTIONS = {
    "get": ["get", "k"],
    "put": ["put", "k", "v"],
    "delete": ["delete", "k"],
    "cas": ["cas", "k", "v", "--absent"],
    "submit": ["submit", "{}"],
    "query": ["query", "{}"],
    "check": ["check"],
}


def not_a_node(url: str, status: int, content_type: str) -> str:
    return (
        f"CommandError: the server at {url} did not answer like a Paxos node "
        f"(HTTP {status}, {content_type}): "
    )


@pytest.mark.parametrize("action", ACTIONS)
def test_a_plain_http_server_is_no_paxos_node(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, action: str
) -> None:
    """``python -m http.server``: 404 (GET) or 501 (other methods), an HTML page each. One line
    without the page, and no retry advice (no Paxos node had the write); ``check``: exit 2, as
    for every failure but "a node's state differs"."""
    with http_nodes(1, PlainFiles) as [server]:
        server.directory = str(tmp_path)  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = run(capsys, "--url", url, "--token", "t", *ACTIONS[action])
    status = 404 if action in {"get", "check"} else 501
    assert code == (2 if action == "check" else 1)
    assert out == "" and len(err.splitlines()) == 1, err
    line = error_line(err)
    assert line.startswith(not_a_node(url, status, "text/html;charset=utf-8")), line
    assert line.endswith("'...") and '\'<!DOCTYPE HTML>\\n<html lang="en">\\n' in line, line
    assert "request-id" not in line and len(line) < 250, line


class EmptyJson(BaseHTTPRequestHandler):
    """Any request: 200 with ``{}``, as a JSON server that is not a Paxos node answers."""

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = do_DELETE = answer  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("action", ["get", "put", "delete", "cas", "submit", "query"])
def test_a_json_answer_without_the_nodes_fields_is_one_line(
    capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """A KeyError traceback from inside the client before."""
    with http_nodes(1, EmptyJson) as [server]:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = run(capsys, "--url", url, "--token", "t", *ACTIONS[action])
    assert code == 1 and out == "" and len(err.splitlines()) == 1, err
    assert "as a Paxos node's would: '{}'" in error_line(err), err


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_proxys_error_page_leaves_a_writes_outcome_unknown(
    capsys: pytest.CaptureFixture[str], status: int
) -> None:
    """A load balancer's 502 or 504 page (or a 500 page) may come after it passed the write on
    to a node: the retry advice stays (a review found it dropped)."""
    with http_nodes(1, HtmlPage) as [server]:
        server.status = status  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", url, "--token", "t", "put", "k", "v")
    line = error_line(err)
    assert code == 1 and line.startswith(not_a_node(url, status, "text/html; charset=utf-8"))
    assert "the outcome is unknown" in line and "--request-id" in line, line


@pytest.mark.parametrize("action", ACTIONS)
def test_an_html_page_answered_with_200_is_no_answer(
    capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """A web site that answers every path with its page (a get failed with a traceback): at
    most 80 characters of it, control characters and line separators escaped."""
    with http_nodes(1, HtmlPage) as [server]:
        server.status = 200  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", url, "--token", "t", *ACTIONS[action])
    assert code == (2 if action == "check" else 1)
    line = error_line(err)
    assert len(err.strip().splitlines()) == 1, err
    assert line == not_a_node(url, 200, "text/html; charset=utf-8") + repr(HTML_PAGE[:80]) + "..."
    assert "\x1b" not in line and "\\x1b[31m\\u2028<body>Welcome to nginx!\\t" in line


def test_an_html_503_is_retried_then_named_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """503 (a maintenance page, or a node's server that gave up waiting for the application):
    retried until ``--timeout`` as a node's 503, then the same one line, with the retry advice
    of a write whose outcome is unknown."""
    with http_nodes(1, HtmlPage) as [server]:
        server.status = 503  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", url, "--timeout", "0.3", "put", "k", "v")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert error_line(err).startswith(
        f"CommandError: the server at {url} did not answer like a Paxos node (text/html; "
        f"charset=utf-8): {HTML_PAGE[:80]!r}... (HTTP 503): the outcome is unknown"
    ), err


def test_status_names_a_server_that_is_no_paxos_node_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with http_nodes(1, PlainFiles) as [server]:
        server.directory = str(tmp_path)  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = run(capsys, "--url", url, "status")
    assert code == 1, err
    [_header, row] = out.splitlines()
    address = url.removeprefix("http://")
    assert row.startswith(
        f"{address:<22} error: the server at {url} did not answer like a Paxos node (HTTP 404, "
    ), row
    assert len(row) < 250, row


def test_the_command_line_names_a_plain_http_server_in_one_line(tmp_path: Path) -> None:
    """The real command line: a fresh ``manage.py``, its exit status and its stderr."""
    with http_nodes(1, PlainFiles) as [server]:
        server.directory = str(tmp_path)  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = paxos_cli("--url", url, "--token", "t", "put", "k", "-", stdin=b"v")
    stderr = result.stderr.decode()
    result.stderr = stderr
    assert_one_line(result, not_a_node(url, 501, "text/html;charset=utf-8"))


# 3. a real node


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.e2e
def test_a_value_too_large_for_the_command_line_goes_through_standard_input(
    shared_cluster: Cluster,
) -> None:
    """200 KiB: more than one argument may hold (Linux: 128 KiB), less than the node's value
    limit (256 KiB). Every byte arrives, the trailing newline too."""
    config = ["--config", str(shared_cluster.config_path)]
    key = unique("stdin")
    value = ("line of text ünïcode\n" * 10_000)[: 200 * 1024]
    put = paxos_cli(*config, "put", key, "-", stdin=value.encode())
    assert put.returncode == 0, put.stderr
    get = paxos_cli(*config, "--json", "get", key)
    assert get.returncode == 0, get.stderr
    assert json.loads(get.stdout) == {"key": key, "value": value}

    command = json.dumps({"type": "put", "key": key, "value": "from submit"}) + "\n"
    submit = paxos_cli(*config, "submit", "-", stdin=command.encode())
    assert submit.returncode == 0, submit.stderr
    cas = paxos_cli(*config, "cas", key, "swapped", "--expected", "-", stdin=b"from submit")
    assert cas.returncode == 0, cas.stderr
    assert json.loads(cas.stdout)["succeeded"] is True


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (300 * 1024, "CommandError: value too large: 307200 bytes (limit 262144) (HTTP 413)"),
        (2 * 1024 * 1024, "CommandError: request body too large: "),  # the node's body limit
    ],
)
def test_a_value_too_large_for_the_node_gets_its_413(
    shared_cluster: Cluster, size: int, expected: str
) -> None:
    result = paxos_cli(
        "--config", str(shared_cluster.config_path), "put", unique("big"), "-", stdin=b"v" * size
    )
    stderr = result.stderr.decode()
    result.stderr = stderr
    assert_one_line(result, "(HTTP 413)")
    assert stderr.startswith(expected), stderr
