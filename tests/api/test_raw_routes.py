"""The raw ASGI routes of the KV store (``kvstore/api/asgi.py``) answer exactly as the Django
views they stand in for: every request below goes through the project's ASGI application twice,
once with the raw routes and once without (the lean Django path), and the status, the JSON body
and the headers a client acts on must match."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync

from consensus.api.lean import LeanRouter, RawRoute
from consensus.runtime import NoQuorumError
from kvstore.api import asgi as kv_asgi
from paxos_site.asgi import application, django_asgi_app
from tests.api.conftest import TOKEN, FakeNode
from tests.fixtures.asgi import call_asgi, http_scope

pytestmark = pytest.mark.django_db(transaction=True)

WITHOUT_RAW_ROUTES = LeanRouter(django_asgi_app)
HEADERS_THAT_MATTER = (b"content-type", b"retry-after", b"www-authenticate", b"allow")
VOLATILE = ("instance", "request_id")
"""A write's own instance and generated id differ between the two runs of it."""


def call(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[bytes, bytes]]:
    sent = {"authorization": f"Bearer {TOKEN}", **(headers or {})}
    status, response_headers, content = call_asgi(
        app, method, path, body, query=query, headers=sent
    )
    kept = {k: response_headers[k] for k in HEADERS_THAT_MATTER if k in response_headers}
    return status, orjson.loads(content), kept


def both(node: FakeNode, *args: Any, **kwargs: Any) -> tuple[int, Any, dict[bytes, bytes]]:
    """The answer of the raw route, after checking the Django path gives the same (the node
    forgets the first run's request ids, so a request id is new both times)."""
    django = call(WITHOUT_RAW_ROUTES, *args, **kwargs)
    node.results.clear()
    raw = call(application, *args, **kwargs)
    if raw[0] == 200 and isinstance(raw[1], dict):
        for field in VOLATILE:
            if field in raw[1] and field in django[1]:
                django[1][field] = raw[1][field]
    assert raw == django
    return raw


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


CASES = [
    ("PUT", "/api/kv/1/name", body({"value": "Mike"}), "", None, 200),
    ("PUT", "/api/kv/1/name", body({"value": "v", "request_id": "r-1"}), "", None, 200),
    ("PUT", "/api/kv/2/name", body({"value": "v"}), "", {"x-request-id": "h-1"}, 200),
    ("PUT", "/api/kv/1/a b", body({"value": "spaced"}), "", None, 200),
    ("PUT", "/api/kv/1/naïve", body({"value": "ünï"}), "", None, 200),
    ("PUT", "/api/kv/1/k", b"{", "", None, 400),
    ("PUT", "/api/kv/1/k", b"[1]", "", None, 400),
    ("PUT", "/api/kv/1/k", b"", "", None, 400),
    ("PUT", "/api/kv/1/k", body({}), "", None, 400),
    ("PUT", "/api/kv/1/k", body({"value": "v", "vaule": 1}), "", None, 400),
    ("PUT", "/api/kv/1/k", body({"value": 1}), "", None, 400),
    ("PUT", "/api/kv/1/k", body({"value": "a\x00b"}), "", None, 400),
    ("PUT", "/api/kv/1/k", body({"value": "v", "request_id": "paxos:x"}), "", None, 400),
    ("PUT", "/api/kv/1/k", body({"value": "v", "request_id": 7}), "", None, 400),
    ("PUT", "/api/kv/1/k", body({"value": "x" * 3000}), "", None, 413),
    ("PUT", "/api/kv/1/" + "k" * 1025, body({"value": "v"}), "", None, 413),
    ("PUT", "/api/kv/1/k", body({"value": "v"}), "", {"content-length": "abc"}, 400),
    ("PUT", "/api/kv/1/k", body({"value": "v"}), "", {"authorization": "Bearer wrong"}, 401),
    ("PUT", "/api/kv/1/k", body({"value": "v"}), "", {"authorization": "Basic eDp5"}, 401),
    ("PUT", "/api/kv/9/k", body({"value": "v"}), "", None, 404),
    ("PUT", "/api/kv/3/k", body({"value": "v"}), "", None, 404),
    ("GET", "/api/kv/1/name", b"", "", None, 200),
    ("GET", "/api/kv/1/name", b"", "consistency=local", None, 200),
    ("GET", "/api/kv/1/name", b"", "consistency=local&consistency=linearizable", None, 200),
    ("GET", "/api/kv/1/missing", b"", "", None, 404),
    ("GET", "/api/kv/1/name", b"", "consistency=bogus", None, 400),
    ("GET", "/api/kv/1/name", b"", "consistency=", None, 400),
    ("GET", "/api/kv/9/name", b"", "", None, 404),
    ("GET", "/api/kv/1/name", b"", "", {"authorization": "Bearer wrong"}, 401),
    # The token before the body: a wrong one is a 401 whatever the body (not a 413 or 400).
    ("PUT", "/api/kv/1/k", body({"value": "x" * 3000}), "", {"authorization": "Bearer wrong"}, 401),
    ("PUT", "/api/kv/1/k", b"{", "", {"authorization": ""}, 401),
]


@pytest.mark.parametrize(("method", "path", "data", "query", "headers", "status"), CASES)
def test_raw_route_answers_as_the_view(
    fake_node: FakeNode,
    settings: Any,
    method: str,
    path: str,
    data: bytes,
    query: str,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    settings.PAXOS_MAX_BODY_BYTES = 2048
    call(application, "PUT", "/api/kv/1/name", body({"value": "stored"}))
    assert both(fake_node, method, path, data, query, headers)[0] == status


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_no_quorum_is_a_503_with_retry_after(fake_node: FakeNode, method: str) -> None:
    fake_node.fail = NoQuorumError("group 1: no leader is known within 5s", retry_after=2.0)
    status, answer, headers = both(fake_node, method, "/api/kv/1/k", body({"value": "v"}))
    assert status == 503 and headers[b"retry-after"] == b"2" and "no leader" in answer["error"]


def test_the_raw_route_serves_gets_and_puts_and_nothing_else(
    fake_node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: the comparisons above prove something only if the raw route ran."""
    router = application.application_mapping["http"]
    assert router.raw_routes == kv_asgi.raw_routes  # the project wires the KV routes
    served = served_by_the_raw_route(monkeypatch)
    assert call(application, "PUT", "/api/kv/1/k", body({"value": "v"}))[0] == 200
    assert call(application, "GET", "/api/kv/1/k")[0] == 200
    assert call(application, "DELETE", "/api/kv/1/k")[0] == 200  # the Django view
    assert served == ["PUT", "GET"]


def test_hot_paths_check_the_host_and_ignore_no_root_path(
    fake_node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean paths skipped what only Django's full stack checks: a ``Host`` outside
    ``ALLOWED_HOSTS`` got 200 from the KV routes (400 elsewhere), and a ``Daphne-Root-Path``
    header made a KV path another view's, run without middleware (a 500 and a traceback)."""
    served = served_by_the_raw_route(monkeypatch)
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert call(application, "PUT", "/api/kv/1/k", body({"value": "v"}), headers=auth)[0] == 200
    for host in ("127.0.0.1:33333", "localhost"):
        assert call(application, "GET", "/api/kv/1/k", headers={**auth, "host": host})[0] == 200
    assert served == ["PUT", "GET", "GET"]
    status = call(application, "GET", "/api/kv/1/k", headers={**auth, "host": "evil.example"})[0]
    assert status == 400 and len(served) == 3
    for path in ("/api/kv/1/k", "/api/groups/1/commands/"):
        status = call(application, "POST", path, b"{}", headers={**auth, "host": "evil.example"})[0]
        assert status == 400
    scope_root = {**auth, "daphne-root-path": "/api/kv/1"}
    status, _, content = call_asgi(
        application, "GET", "/api/kv/1/admin/", headers=scope_root, root_path="/api/kv/1"
    )
    assert len(served) == 3 and status == 302, content  # the admin, through its middleware


def served_by_the_raw_route(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods of the requests the project's first raw route serves from now on."""
    router = application.application_mapping["http"]
    route = router.raw_routes[0]
    served: list[str] = []

    async def entry(request: Any, match: Any) -> Any:
        served.append(request.method)
        return await route.handler(request, match)

    monkeypatch.setattr(router, "raw_routes", (RawRoute(route.pattern, route.methods, entry),))
    return served


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/kv/1/k"),  # the raw route
        ("POST", "/api/kv/1/k/cas"),  # the lean Django path
        ("POST", "/api/groups/1/commands/"),
    ],
)
@pytest.mark.parametrize("app", [application, WITHOUT_RAW_ROUTES], ids=["raw", "lean"])
@pytest.mark.parametrize("token", ["Bearer wrong", "Basic eDp5", ""])
def test_a_request_without_a_valid_token_is_refused_before_its_body_is_read(
    fake_node: FakeNode, app: Any, method: str, path: str, token: str
) -> None:
    """A client without a token must not make the node read and hold a body of up to
    ``PAXOS_MAX_BODY_BYTES``: the 401 goes out before the first ``receive``."""
    received: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
        received.append(message)
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(method, path, {"authorization": token, "content-length": "1000000"})
    async_to_sync(app)(scope, receive, send)
    assert sent[0]["status"] == 401, sent
    assert b"www-authenticate" in {name.lower() for name, _ in sent[0]["headers"]}
    assert received == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_skip_djangos_full_stack(path: str) -> None:
    """Load balancers and Prometheus poll these without a token, some with a cookie: through the
    full stack each probe started two threads from the event loop and hopped to a worker thread
    per middleware (a review measured 6.5-8 ms of loop CPU per probe)."""
    to_django: list[str] = []

    async def django(scope: Any, receive: Any, send: Any) -> None:
        to_django.append(scope["method"])
        await django_asgi_app(scope, receive, send)

    router = LeanRouter(django)
    for headers in ({}, {"cookie": "sessionid=x"}, {"host": "localhost:8000"}):
        status, _, content = call_asgi(router, "GET", path, headers=headers)
        assert status in (200, 503) and content, (headers, content)  # 503: no node runs here
    assert to_django == []
    for method, headers in (("POST", {}), ("GET", {"host": "evil.example"})):
        call_asgi(router, method, path, headers=headers)
    assert to_django == ["POST", "GET"], "only what the full stack must check goes to it"
    status, _, _ = call_asgi(router, "GET", path, headers={"host": "evil.example"})
    assert status == 400
