"""Requests for Django's full stack (no token, a session cookie, the admin) read their body
within ``PAXOS_MAX_BODY_BYTES`` too (``consensus.api.lean.bounded_body``): Django's
``ASGIHandler`` would read a body of any size into a temporary file before anything checked
the client."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync

from paxos_site.asgi import application
from tests.api.conftest import TOKEN, FakeNode
from tests.fixtures.asgi import call_asgi, http_scope

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 1000


@pytest.fixture(autouse=True)
def small_limit(settings: Any) -> None:
    settings.PAXOS_MAX_BODY_BYTES = LIMIT


def streamed(method: str, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple:
    """Send ``chunks`` as a body without a ``Content-Length`` (chunked); the status and body
    of the answer, and how many chunks the application read."""
    scope = http_scope(method, path, dict(headers))
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async_to_sync(application)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], body, len(chunks) - len(pending)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("PUT", "/api/kv/1/k", {}),  # no token: Django's full stack (the 401 is DRF's)
        ("POST", "/api/groups/1/commands/", {"cookie": "sessionid=x"}),  # a session client
        ("POST", "/admin/login/", {"content-type": "application/x-www-form-urlencoded"}),
    ],
)
def test_a_declared_body_above_the_limit_is_refused_before_django_reads_it(
    method: str, path: str, headers: dict[str, str]
) -> None:
    status, response_headers, content = call_asgi(
        application, method, path, b"x" * (LIMIT + 1), headers=headers
    )
    assert status == 413
    assert response_headers[b"content-type"] == b"application/json"
    assert orjson.loads(content)["error"] == (
        f"request body too large: {LIMIT + 1} bytes (limit {LIMIT})"
    )


def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    chunks = [b"x" * 400] * 10  # 4,000 bytes, no Content-Length
    status, content, read = streamed("PUT", "/api/kv/1/k", chunks, {})
    assert status == 413 and read == 3  # stopped at the chunk that went past 1,000 bytes
    assert orjson.loads(content) == {"error": f"request body is larger than {LIMIT} bytes"}


def test_a_body_within_the_limit_reaches_django_whole(fake_node: FakeNode) -> None:
    """Streamed in two chunks to Django's full stack (a cookie keeps a request off the lean
    path), the body arrives whole: the command is applied and answered."""
    headers = {"authorization": f"Bearer {TOKEN}", "cookie": "theme=dark"}
    command = orjson.dumps({"command": '{"type": "put", "key": "k", "value": "v"}'})
    middle = len(command) // 2
    status, content, read = streamed(
        "POST", "/api/groups/1/commands/", [command[:middle], command[middle:]], headers
    )
    assert (status, read) == (200, 2), content
    assert orjson.loads(content)["result"] == {"key": "k", "value": "v"}


def test_a_bad_content_length_is_a_400() -> None:
    status, _, content = call_asgi(
        application, "PUT", "/api/kv/1/k", b"{}", headers={"content-length": "lots"}
    )
    assert status == 400 and orjson.loads(content) == {"error": "Content-Length is not a number"}
