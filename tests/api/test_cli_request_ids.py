"""``manage.py paxos`` picks a write's request id itself, before the first attempt: when the
outcome is unknown (no node answered in time, or a 503), the error names the id and the exact
command that retries the write with it, so that running it again applies it at most once."""

from __future__ import annotations

import json
import re
import shlex
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.fixtures.http import hanging_nodes, http_nodes

WRITES = {
    "put": ["put", "k", "a value"],
    "delete": ["delete", "k"],
    "cas": ["cas", "k", "new", "--expected", "it's old"],
    "cas --absent": ["cas", "k", "new", "--absent", "-g", "2"],
    "submit": ["submit", '{"type": "put", "key": "k", "value": "v"}'],
    "dashes": ["cas", "--expected=-old", "--", "-k", "-new"],  # no option, though they look it
}


class RecordingNode(BaseHTTPRequestHandler):
    """Records each write (method, path, body without its request id, request id) in its
    server's ``seen``; answers the server's ``status``: 503 without naming the request id (as
    a node without a leader answers before proposing), 400, or 200 with every field a write's
    answer may need."""

    def _write(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.loads(raw) if raw else {}
        parts = urlsplit(self.path)
        request_id = body.pop("request_id", None) or parse_qs(parts.query)["request_id"][0]
        self.server.seen.append((self.command, parts.path, body, request_id))  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        if status == 503:
            answer: dict[str, Any] = {"error": "group 1: no leader is known within 0.1s"}
        elif status == 400:
            answer = {"error": "value must be a string"}
        else:
            answer = {"key": "k", "value": "new", "instance": 4, "request_id": request_id}
            answer |= {"result": None, "duplicate": True, "deleted": True, "succeeded": True}
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Retry-After", "0.05")
        self.end_headers()
        self.wfile.write(raw)

    do_PUT = do_POST = do_DELETE = _write  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("write", WRITES)
def test_a_write_of_unknown_outcome_names_its_request_id_and_the_command_to_retry(
    write: str,
) -> None:
    """Every node answers 503: the error names the id every attempt was sent with, and the
    command it prints, run once a node answers, sends the same write with the same id."""
    with http_nodes(1, RecordingNode) as [server]:
        server.seen, server.status = [], 503  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cluster = ["--url", url, "--token", "secret", "--timeout", "0.3"]
        with pytest.raises(CommandError) as raised:
            call_command("paxos", *cluster, *WRITES[write])
        message = str(raised.value)
        attempts = server.seen  # type: ignore[attr-defined]
        assert attempts and len({attempt[3] for attempt in attempts}) == 1
        request_id = attempts[0][3]
        assert f"retry with --request-id {request_id} to apply it at most once: " in message
        assert "secret" not in message  # the token is not printed
        command = message.split(" to apply it at most once: ", 1)[1]
        command = command.removesuffix(" (with your token for TOKEN)")
        words = shlex.split(command)
        assert words[:3] == ["python", "manage.py", "paxos"]
        assert f"--request-id={request_id}" in words

        server.status = 200  # type: ignore[attr-defined]
        words[words.index("TOKEN")] = "secret"
        call_command(*words[2:])
        assert server.seen[-1] == attempts[0]  # type: ignore[attr-defined]


def test_a_write_no_node_answered_names_its_request_id() -> None:
    """A node that timed out until ``--timeout`` (it may have received the write):
    ``Unavailable``, the id and the command too. (Connections refused are no unknown outcome:
    nothing was sent, test_cli_bad_input.py.)"""
    with hanging_nodes(1) as [(host, port)]:
        url = f"http://{host}:{port}"
        with pytest.raises(CommandError) as raised:
            call_command("paxos", "--url", url, "--timeout", "0.2", "put", "k", "v")
    assert re.search(
        r"timed out: the outcome is unknown \(it may still be applied\); retry with "
        rf"--request-id ([0-9a-f]{{28}}) to apply it at most once: python manage.py paxos "
        rf"--url {url} --timeout 0.2 put --request-id=\1 -- k v$",
        str(raised.value),
    ), str(raised.value)


def test_a_write_the_node_refused_names_no_request_id() -> None:
    """A 400 is no unknown outcome: nothing to retry."""
    with http_nodes(1, RecordingNode) as [server]:
        server.seen, server.status = [], 400  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(CommandError) as raised:
            call_command("paxos", "--url", url, "--token", "t", "put", "k", "v")
    assert "request-id" not in str(raised.value)
