"""Paths no API route takes, and requests Django refuses before any view, through the project's
ASGI application (so with its middleware, CSRF included, unlike Django's test client): every
method gets the API's JSON 404 or 400, never an HTML page, a 500 or a traceback in the log."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from asgiref.sync import async_to_sync

from consensus.api.lean import UNDECODABLE_PATH
from paxos_site.asgi import application
from tests.api.conftest import TOKEN, FakeNode
from tests.fixtures.asgi import call_asgi
from tests.fixtures.logs import consensus_logs

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = "9" * 5000
"""More digits than ``int()`` takes (4300): a group id must not reach it."""


def call(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent = {"authorization": f"Bearer {TOKEN}", "host": "127.0.0.1", **(headers or {})}
    return call_asgi(application, method, path, body, headers=sent)


def json_error(headers: dict[bytes, bytes], content: bytes) -> str:
    assert headers[b"content-type"].startswith(b"application/json"), content[:200]
    return orjson.loads(content)["error"]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/kv/{HUGE}/k"),
        ("PUT", f"/api/kv/{HUGE}/k"),
        ("POST", f"/api/kv/{HUGE}/k/cas"),
        ("POST", f"/api/groups/{HUGE}/commands/"),
        ("GET", f"/api/groups/{HUGE}/log/"),
        ("GET", f"/api/groups/{HUGE}/"),
        ("GET", f"/api/nodes/{HUGE}/"),
        ("GET", f"/api/kv/{'1' * 19}/k"),
    ],
)
@pytest.mark.parametrize("token", [True, False], ids=["token", "no-token"])
def test_a_group_id_with_too_many_digits_is_no_endpoint(
    fake_node: FakeNode, caplog: pytest.LogCaptureFixture, method: str, path: str, token: bool
) -> None:
    with consensus_logs(caplog):
        status, headers, content = call(
            method, path, b'{"value": "v"}', None if token else {"authorization": ""}
        )
    assert status == 404, content[:300]
    message = json_error(headers, content)
    assert message.startswith("no API endpoint at /api/")
    assert len(message) < 300  # the path is cut short, not echoed back whole
    no_tracebacks(caplog)


def test_a_group_id_of_18_digits_is_still_a_group(fake_node: FakeNode) -> None:
    status, headers, content = call("GET", f"/api/kv/{'1' * 18}/k")
    assert status == 404 and "unknown group" in json_error(headers, content)


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path", ["/api/kv/abc/k", "/api/nonexistent/", "/api/kv/1/a/b", "/api/groups/x/commands/"]
)
@pytest.mark.parametrize("token", [True, False], ids=["token", "no-token"])
def test_an_unmatched_api_path_is_a_json_404_whatever_the_method(
    fake_node: FakeNode, method: str, path: str, token: bool
) -> None:
    """Not CSRF's HTML 403: the catch-all view has nothing to protect."""
    status, headers, content = call(method, path, b"{}", None if token else {"authorization": ""})
    assert status == 404, content[:300]
    assert json_error(headers, content).startswith("no API endpoint at ")


@pytest.mark.parametrize("path", ["/api/kv/1/a/b", "/api/kv/1/a/b/cas"])
def test_a_kv_key_with_a_slash_is_named_as_the_problem(fake_node: FakeNode, path: str) -> None:
    """``PUT /api/kv/1/a%2Fb`` reaches the router decoded, as a path no route takes."""
    status, headers, content = call("PUT", path, b'{"value": "v"}')
    assert status == 404
    assert "KV keys cannot contain '/'" in json_error(headers, content)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/status/"), ("POST", "/api/nonexistent/"), ("GET", "/api/groups/")],
)
def test_a_disallowed_host_on_the_api_is_a_json_400_and_one_warning(
    fake_node: FakeNode, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    caplog.set_level(logging.INFO)
    with consensus_logs(caplog):
        status, headers, content = call(method, path, b"{}", {"host": "evil.example"})
    assert status == 400, content[:300]
    # users set PAXOS_ALLOWED_HOSTS (settings.py builds ALLOWED_HOSTS from it): name that one
    assert json_error(headers, content) == (
        "the Host header names no host this node serves (PAXOS_ALLOWED_HOSTS)"
    )
    no_tracebacks(caplog)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage() == (
        f"{method} {path} refused: Invalid HTTP_HOST header: 'evil.example'. You may need to add "
        "'evil.example' to PAXOS_ALLOWED_HOSTS (environment, comma separated)."
    )


def test_a_long_disallowed_host_is_cut_short_in_the_log_but_the_advice_stays(
    fake_node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    host = "a" * 60 + "." + "b" * 60 + ".example"
    with consensus_logs(caplog):
        assert call("GET", "/api/status/", headers={"host": host})[0] == 400
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith("... to PAXOS_ALLOWED_HOSTS (environment, comma separated)."), line
    assert len(line) < 300, line


def test_a_disallowed_host_elsewhere_is_django_s_400_without_a_traceback(
    fake_node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with consensus_logs(caplog):
        status, _, _ = call("GET", "/healthz", headers={"host": "evil.example"})
    assert status == 400
    no_tracebacks(caplog)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 1


def call_as_uvicorn(method: str, raw_path: str, token: bool = True) -> tuple[int, bytes, bytes]:
    """Status, content type and body of a request whose path the server percent-decoded as
    uvicorn does: leniently, every invalid UTF-8 sequence read as U+FFFD (``raw_path`` keeps
    the escapes as sent)."""
    headers = [(b"host", b"127.0.0.1"), (b"content-length", b"14")]
    if token:
        headers.append((b"authorization", f"Bearer {TOKEN}".encode()))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 33333),
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b'{"value": "v"}', "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async_to_sync(application)(scope, receive, send)
    content_type = dict(sent[0]["headers"]).get(b"content-type", b"")
    return sent[0]["status"], content_type, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("raw_path", ["/api/kv/1/%ff", "/api/kv/1/a%c3", "/api/groups/1/%fe/"])
@pytest.mark.parametrize("token", [True, False], ids=["token", "no-token"])
def test_an_api_path_whose_escapes_are_not_utf8_is_a_json_400(
    fake_node: FakeNode, method: str, raw_path: str, token: bool
) -> None:
    """Under uvicorn ``/api/kv/1/%ff`` and ``/api/kv/1/%fe`` were both key U+FFFD (daphne's
    protocol refuses them itself, in the same words: ``daphne_http``)."""
    status, content_type, content = call_as_uvicorn(method, raw_path, token)
    assert (status, content_type) == (400, b"application/json"), content[:300]
    assert orjson.loads(content) == {"error": UNDECODABLE_PATH}


def test_an_escaped_replacement_character_is_still_a_key(fake_node: FakeNode) -> None:
    """U+FFFD sent as its own UTF-8 escapes is a valid key, not an undecodable path."""
    assert call_as_uvicorn("PUT", "/api/kv/1/%EF%BF%BD")[0] == 200
    status, _, content = call_as_uvicorn("GET", "/api/kv/1/%EF%BF%BD")
    assert status == 200 and orjson.loads(content)["key"] == "\ufffd"
