"""Fuzzing a live node from its own OpenAPI schema (hypothesis + hypothesis-jsonschema).

For every operation in ``/api/schema/``: path parameters, query parameters and bodies drawn from
the schema (valid ones) or mutated (wrong types, extra fields, garbage bytes), with or without the
token. Each answer must be one the schema documents for that operation (or 405 for a wrong
method), a JSON ``{"error": ...}`` when it is an error, never a 500, and the node must still be
healthy at the end. Bounded to roughly 20-30 seconds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e

BUDGET_SECONDS = 25.0
MAX_EXAMPLES = 600


def load_schema(cluster: Cluster) -> dict[str, Any]:
    url = cluster.nodes[1].url + "/api/schema/?format=json"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), operation)
        for path, item in sorted(schema["paths"].items())
        for method, operation in sorted(item.items())
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def parameter_strategy(parameter: dict[str, Any]) -> st.SearchStrategy[Any]:
    name = parameter["name"]
    kind = parameter.get("schema", {}).get("type", "string")
    if name == "group_id":
        return st.sampled_from([1, 2]) | st.integers(min_value=0, max_value=2**40)
    if name == "node_id":
        return st.sampled_from([1, 2, 3]) | st.integers(min_value=0, max_value=10**6)
    if name == "key":
        return st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
            min_size=1,
            max_size=40,
        )
    if "enum" in parameter.get("schema", {}):
        return st.sampled_from(parameter["schema"]["enum"]) | st.text(max_size=10)
    if kind == "integer":
        return st.integers(min_value=-5, max_value=2000)
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def body_strategy(operation: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    valid: st.SearchStrategy[Any] = st.just(None)
    if content is not None:
        valid = from_schema({**content["schema"], "components": components})
    garbage = st.binary(max_size=40).map(lambda raw: ("raw", raw))
    return st.one_of(
        valid.map(lambda body: ("json", body)),
        json_values.map(lambda body: ("json", body)),
        garbage,
    )


@st.composite
def requests(draw: st.DrawFn, ops: list, components: dict[str, Any]) -> dict[str, Any]:
    path_template, method, operation = draw(st.sampled_from(ops))
    path = path_template
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        value = draw(parameter_strategy(parameter))
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(str(value), safe=""))
        elif parameter["in"] == "query" and draw(st.booleans()):
            query[parameter["name"]] = value
    if query:
        path += "?" + urlencode(query)
    kind, body = draw(body_strategy(operation, components))
    data = body if kind == "raw" else (None if body is None else json.dumps(body).encode())
    if method in {"GET", "DELETE"} and draw(st.booleans()):
        data = None
    documented: set[str] | None = set(operation["responses"])
    if draw(st.integers(0, 9)) == 0:  # sometimes a method the URL may not have
        other = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH"]))
        if not any(p == path_template and m == other for p, m, _op in ops):
            method, documented = other, None
    token = draw(st.sampled_from([TOKEN, TOKEN, TOKEN, None, "wrong"]))
    return {
        "template": path_template,
        "method": method,
        "path": path,
        "data": data,
        "token": token,
        "documented": documented,
    }


def send(cluster: Cluster, request: dict[str, Any]) -> tuple[int, bytes, str]:
    headers = {"Content-Type": "application/json"}
    if request["token"]:
        headers["Authorization"] = f"Bearer {request['token']}"
    http_request = urllib.request.Request(
        cluster.nodes[1].url + request["path"],
        data=request["data"],
        method=request["method"],
        headers=headers,
    )
    try:
        with urllib.request.urlopen(http_request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def test_fuzz_the_api_from_its_schema(shared_cluster: Cluster) -> None:
    schema = load_schema(shared_cluster)
    ops = operations(schema)
    components = schema.get("components", {})
    started = time.monotonic()
    seen: dict[tuple[str, int], int] = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests(ops, components))
    def check(request: dict[str, Any]) -> None:
        if time.monotonic() - started > BUDGET_SECONDS:
            return  # budget spent: the remaining examples are no-ops
        status, raw, content_type = send(shared_cluster, request)
        seen[(request["template"], status)] = seen.get((request["template"], status), 0) + 1
        assert status < 500 or status == 503, (request, status, raw[:300])
        if request["documented"] is not None:
            assert str(status) in request["documented"], (request, status, raw[:300])
        else:
            assert status in (401, 404, 405), (request, status, raw[:300])
        assert content_type.startswith("application/json"), (request, status, content_type)
        body = json.loads(raw)
        if status >= 400:
            assert isinstance(body, dict) and isinstance(body.get("error"), str), body

    check()
    with urllib.request.urlopen(shared_cluster.nodes[1].url + "/healthz", timeout=10) as response:
        assert response.status == 200
    code, _ = shared_cluster.request(1, "PUT", "/api/kv/1/fuzz-after", {"value": "ok"})
    assert code == 200
    statuses = {status for _template, status in seen}
    assert {200, 400, 401, 404} <= statuses, seen
