"""``manage.py paxos`` with input it cannot use: a one-line error before anything is sent, never a
traceback, and the exit status its ``--help`` gives (2: a usage error; ``check``: 1 only when a
node's state differs). And what it says when every node refused the connection: nothing was sent,
so a write was not applied, and it says so at once rather than after ``--timeout``. Stand-in
nodes (``tests.fixtures.http``) and free ports (connection refused), no cluster."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from consensus.client import PaxosClient, Unavailable
from consensus.config import free_ports
from consensus.management.commands.paxos import Command
from tests.api.test_cli_request_ids import RecordingNode
from tests.fixtures.http import JsonAnswer, answering_nodes, hanging_nodes, http_nodes

KV_ANSWER = {"key": "k", "value": "v", "instance": 3, "request_id": "r", "result": "v"}
KV_ANSWER |= {"duplicate": False, "deleted": True, "succeeded": True}


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, env_token: str | None = None
) -> tuple[int, str, str]:
    """``manage.py paxos ARGV`` as a shell runs it (argparse's own exits, ``CommandError`` as
    ``CommandError: ...`` and its return code): exit status, stdout and stderr."""
    capsys.readouterr()
    try:
        Command().run_from_argv(["manage.py", "paxos", *argv])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def error_line(err: str) -> str:
    """The one line that says what is wrong (argparse prints its usage lines before it)."""
    lines = err.strip().splitlines()
    assert lines, "no error"
    return lines[-1]


def dead_url() -> str:
    (port,) = free_ports(1)
    return f"http://127.0.0.1:{port}"


# 1. --timeout


@pytest.mark.timeout(10)  # nan was taken: a deadline never reached, retrying for ever
@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "-1", "0", "1e999", "soon"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_timeout_that_is_no_positive_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], timeout: str, where: str
) -> None:
    option = [f"--timeout={timeout}"]
    before, after = (option, []) if where == "before" else ([], option)
    code, _, err = run(capsys, "--url", dead_url(), *before, "get", "k", *after)
    assert code == 2
    assert error_line(err).endswith(
        f"argument --timeout: a timeout is a positive number of seconds, not {timeout!r}"
    )


# 2. check's exit status


@pytest.mark.parametrize("group", [[], ["-g", "1"]])
def test_check_exits_2_when_no_node_could_be_compared(
    capsys: pytest.CaptureFixture[str], group: list[str]
) -> None:
    """A node that times out (a majority down: it waits for a quorum) or refuses: nothing was
    compared, and 1 would tell cron "a node's state differs"."""
    with hanging_nodes(1) as [(host, port)]:
        code, _, err = run(
            capsys, "--url", f"http://{host}:{port}", "--timeout", "0.5", "check", *group
        )
    assert (code, error_line(err)) == (2, f"CommandError: {host}:{port}: timed out")
    code, _, err = run(capsys, "--url", dead_url(), "check", *group)
    assert code == 2 and "Connection refused" in err


def test_check_still_exits_1_when_a_node_differs(capsys: pytest.CaptureFixture[str]) -> None:
    check = {"group_id": 1, "node_id": 1, "instance": 9, "first": 4, "state": None, "note": None}
    with answering_nodes(check | {"peers": {"2": "same", "3": "differs"}}) as (url,):
        code, out, err = run(capsys, "--url", url, "--token", "t", "check", "-g", "1")
    assert code == 1 and "some node's state machine differs" in err
    assert out.startswith("group 1 at instance 9, seen from node 1: node 2 same, node 3 differs")


# 3. connection refused


@pytest.mark.parametrize(
    "write",
    [
        ["put", "k", "v"],
        ["delete", "k"],
        ["cas", "k", "v", "--absent"],
        ["submit", '{"type": "put", "key": "k", "value": "v"}'],
    ],
)
def test_a_write_every_node_refused_was_not_sent_and_says_so_at_once(
    capsys: pytest.CaptureFixture[str], write: list[str]
) -> None:
    """Refused: nothing reached a node, so nothing was applied and there is nothing to retry at
    most once; and no retrying for the default 30 s."""
    url = dead_url()
    port = url.rsplit(":", 1)[1]
    started = time.monotonic()
    code, _, err = run(capsys, "--url", url, *write)
    assert time.monotonic() - started < 3
    assert (code, error_line(err)) == (
        1,
        f"CommandError: 127.0.0.1:{port}: [Errno 111] Connection refused: the write was not "
        "sent, so it was not applied (is the node up?)",
    )


def test_a_refused_retry_with_your_request_id_says_an_earlier_run_may_have_applied_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = f"{dead_url()},{dead_url()}"
    code, _, err = run(capsys, "--url", urls, "put", "k", "v", "--request-id", "mine")
    assert code == 1
    assert error_line(err).endswith(
        "Connection refused: the write was not sent this time (all 2 nodes refused it: are "
        "they up?); an earlier run with --request-id mine may have applied it: run this again "
        "to know"
    )


def test_a_read_every_node_refused_fails_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """It stayed silent for the whole default --timeout (30 s), retrying closed ports."""
    started = time.monotonic()
    code, _, err = run(capsys, "--url", dead_url(), "get", "k")
    assert time.monotonic() - started < 3
    assert code == 1 and error_line(err).endswith("Connection refused (is the node up?)")


def test_a_refused_node_is_still_failed_over_from(capsys: pytest.CaptureFixture[str]) -> None:
    with answering_nodes(KV_ANSWER) as (live,):
        code, out, _ = run(capsys, "--url", f"{dead_url()},{live}", "--token", "t", "get", "k")
    assert (code, out) == (0, "v")  # the value as it is (test_cli_output.py)


class NoLeader(JsonAnswer):
    """Every request: 503, as a node without a leader answers (a write may have been proposed)."""

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_json(503, {"error": "group 1: no leader is known within 0.1s"})


def test_a_write_a_node_may_have_received_stays_unknown_when_the_last_one_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A node answered 503 (the write may have been proposed), and the last attempt, at the
    start of the round after the pause that ran into --timeout, was refused: the outcome is
    unknown, so the error names the request id to retry with."""
    with http_nodes(1, NoLeader) as [server]:
        urls = f"{dead_url()},http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", urls, "--timeout", "0.3", "put", "k", "v")
    assert code == 1
    assert "Connection refused: the outcome is unknown (it may still be applied); retry " in err


def test_a_kept_alive_connection_dropped_then_refused_is_not_refused() -> None:
    """The request went out on a kept-alive connection the node then dropped, and reopening it
    was refused: the node may have received it, so the call's error is no ``refused`` one (and
    ``retry_refused=False`` does not cut the call short)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_once_then_go() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        body = json.dumps(KV_ANSWER).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        connection.sendall(head.encode() + b"\r\n\r\n" + body)
        connection.close()
        listener.close()

    server = threading.Thread(target=answer_once_then_go, daemon=True)
    server.start()
    client = PaxosClient(
        "127.0.0.1", port, "t", retry_timeout=0.3, discover=False, retry_refused=False
    )
    with client:
        assert client.get("k") == "v"
        server.join(5)
        with pytest.raises(Unavailable) as raised:
            client.put("k", "w")
    assert not raised.value.refused, raised.value


def test_a_client_retries_refused_connections_by_default() -> None:
    """The library keeps retrying (a node may be restarting); only the CLI asks not to."""
    (port,) = free_ports(1)
    client = PaxosClient("127.0.0.1", port, "t", retry_timeout=0.5, discover=False)
    started = time.monotonic()
    with client, pytest.raises(Unavailable) as raised:
        client.get("k")
    assert time.monotonic() - started >= 0.45 and raised.value.refused


# 4. text that is no UTF-8 (a shell's bytes, as Python keeps them: surrogate escapes)


NOT_UTF8 = b"\xff\xfe".decode(errors="surrogateescape")


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        (["put", NOT_UTF8, "v"], "KEY"),
        (["put", "k", "a" + NOT_UTF8], "VALUE"),
        (["get", NOT_UTF8], "KEY"),
        (["delete", NOT_UTF8], "KEY"),
        (["cas", "k", "v", "--expected", NOT_UTF8], "--expected"),
        (["submit", NOT_UTF8], "COMMAND"),
        (["query", NOT_UTF8], "QUERY"),
        (["put", "k", "v", "--request-id", NOT_UTF8], "--request-id"),
    ],
)
def test_text_that_is_no_utf8_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], arguments: list[str], name: str
) -> None:
    code, _, err = run(capsys, "--url", dead_url(), *arguments)
    assert code == 2
    position = 1 if arguments[2:3] == ["a" + NOT_UTF8] else 0
    assert error_line(err).endswith(
        f"argument {name}: not valid UTF-8 (byte 0xff at position {position})"
    )


# 5. group ids


@pytest.mark.parametrize("group", ["-1", "0", str(2**31), str(2**70), "one"])
@pytest.mark.parametrize(
    "action",
    [["get", "k"], ["put", "k", "v"], ["delete", "k"], ["cas", "k", "v", "--absent"],
     ["submit", "{}"], ["query", "{}"], ["check"]],
)  # fmt: skip
def test_a_group_id_out_of_range_is_a_usage_error_for_every_action(
    capsys: pytest.CaptureFixture[str], group: str, action: list[str]
) -> None:
    code, _, err = run(capsys, "--url", dead_url(), *action, f"--group={group}")
    assert code == 2
    assert error_line(err).endswith(
        f"argument --group/-g: a group id is a positive integer up to 2147483647, not {group!r}"
    )


def test_the_highest_group_id_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    with answering_nodes(KV_ANSWER) as (url,):
        code, out, _ = run(capsys, "--url", url, "--token", "t", "get", "k", "-g", str(2**31 - 1))
    assert (code, out) == (0, "v")  # the value as it is (test_cli_output.py)


# 6. arguments that are empty or that no URL can carry


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["put", "k", "v", "--request-id", ""], "--request-id: a request id cannot be empty"),
        (["cas", "k", "v", "--absent", "--request-id="], "--request-id: a request id cannot be"),
        (["--url", "", "put", "k", "v"], "argument --url: no URL in ''"),
        (["put", "k", "v", "--url", " , "], "argument --url: no URL in ' , '"),
        (["get", ""], "argument KEY: a key is a non-empty string"),
        (["put", "a/b", "v"], "argument KEY: keys cannot contain '/': 'a/b'"),
        (["delete", "/"], "argument KEY: keys cannot contain '/': '/'"),
        (["cas", "", "v", "--absent"], "argument KEY: a key is a non-empty string"),
    ],
)  # fmt: skip
def test_an_empty_or_impossible_argument_is_a_usage_error_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str
) -> None:
    """``--request-id "$ID"`` or ``--url "$NODE"`` with the variable unset: the write went
    with a new request id (a retry meant to apply it at most once applied it again), or to the
    default nodes instead of the one named; and a key no URL can carry was exit status 1, as
    if a node had refused it. Each a usage error now (the recording node sees nothing)."""
    with http_nodes(1, RecordingNode) as [server]:
        server.seen, server.status = [], 200  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(capsys, "--url", url, "--token", "t", *arguments)
        assert server.seen == []  # type: ignore[attr-defined]
    assert code == 2 and "Traceback" not in err
    assert expected in error_line(err), err


# 7. tokens a header cannot carry


@pytest.mark.parametrize("token", ["sec\nret", "sec\rret", "sec\x7fret", "sécret"])
def test_a_token_a_header_cannot_carry_is_refused_without_printing_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    code, _, err = run(capsys, "--url", dead_url(), "--token", token, "get", "k")
    assert code == 2 and "sec" not in err
    assert error_line(err).endswith(
        "argument --token: the token has characters an HTTP header cannot carry (a control "
        "character such as a newline, or one that is not ASCII); the token is not printed"
    )
    monkeypatch.setenv("PAXOS_API_TOKEN", token)
    code, _, err = run(capsys, "--url", dead_url(), "get", "k")
    assert code == 1 and "sec" not in err
    assert error_line(err).startswith(
        "CommandError: the API token in $PAXOS_API_TOKEN has characters an HTTP header cannot"
    )


# 8. the cluster options after the action


def test_the_cluster_options_may_follow_the_action(capsys: pytest.CaptureFixture[str]) -> None:
    with answering_nodes(KV_ANSWER) as (url,):
        code, out, err = run(capsys, "submit", "X", "--json", "--url", url, "--token", "t")
        assert (code, json.loads(out)["instance"]) == (0, 3), err
        # before and after: --url adds up (failover from the dead one), the rest stands
        code, out, err = run(
            capsys, "--url", dead_url(), "--json", "--timeout", "5", "get", "k", "--url", url,
            "--token", "t",
        )  # fmt: skip
        assert (code, json.loads(out)) == (0, {"key": "k", "value": "v"}), err


def test_the_help_says_where_the_options_go_and_what_the_exit_status_means() -> None:
    help_text = " ".join(Command().create_parser("manage.py", "paxos").format_help().split())
    assert "--url, --config, --token, --timeout and --json may come before or after ACTION" in (
        help_text
    )
    assert "Exit status: 0 done, 1 failed" in help_text and "2 a usage error" in help_text
