"""A subclass of the KV store registered under a name of its own runs the KV store everywhere
the API asks (``fastpath.machine_refusal``): the REST KV routes, a stream submit's ``"machine":
"kv"`` and a KV get its ``query`` refuses with ``QueryError``. The last one used to compare
registered names, so such a get got the 404 "does not run the KV store" instead of the
machine's own reason (400), while the KV routes took the same group.

In-process against the fake node of ``conftest.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from consensus.registry import registry
from consensus.statemachine import QueryError
from kvstore.statemachines import KVStateMachine
from tests.api.conftest import ApiClient, FakeNode
from tests.api.test_stream_kv_limits import exchange, refusal, rest_refusal

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "test-sealed-kv"
SEALED = "the key 'sealed' is not for reading"


class SealedKV(KVStateMachine):
    """The KV store, except that it refuses to read the key "sealed"."""

    def query(self, queries: Sequence[str]) -> list[Any]:
        if any(json.loads(query).get("key") == "sealed" for query in queries):
            raise QueryError(SEALED)
        return super().query(queries)


@pytest.fixture
def sealed_group(stream_node: FakeNode) -> Iterator[int]:
    """Group 2 runs ``SealedKV``, registered as ``NAME``."""
    registry.register(NAME, SealedKV)
    try:
        stream_node.machines[2] = registry.create(NAME, 2)
        yield 2
    finally:
        registry.unregister(NAME)


def get(key: str) -> str:
    return json.dumps({"op": "get", "key": key})


def test_a_kv_get_a_kv_subclass_refuses_gets_its_reason(sealed_group: int, api: ApiClient) -> None:
    path = f"/api/groups/{sealed_group}/query/"
    assert rest_refusal(api, "POST", path, {"query": get("sealed")}) == (400, SEALED)
    answers = exchange([{"id": "q", "op": "query", "group": sealed_group, "query": get("sealed")}])
    assert refusal(answers["q"]) == (400, SEALED)


def test_a_kv_subclass_runs_the_kv_store_for_every_check(sealed_group: int, api: ApiClient) -> None:
    assert api.call("PUT", f"/api/kv/{sealed_group}/a", {"value": "x"}).status_code == 200
    assert api.call("GET", f"/api/kv/{sealed_group}/a").json()["value"] == "x"
    command = json.dumps({"op": "put", "key": "b", "value": "y"})
    answers = exchange(
        [
            {
                "id": "kv",
                "op": "submit",
                "group": sealed_group,
                "command": command,
                "machine": "kv",
            },
            {
                "id": "own",
                "op": "submit",
                "group": sealed_group,
                "command": command,
                "machine": NAME,
            },
            {"id": "q", "op": "query", "group": sealed_group, "query": get("a")},
        ]
    )
    assert answers["kv"]["ok"] is True, answers
    assert answers["own"]["ok"] is True, answers
    assert answers["q"]["result"]["value"] == "x"
    # the plain KV store is no SealedKV: the 404 names the machine it runs
    assert refusal(
        exchange([{"id": "n", "op": "submit", "group": 1, "command": command, "machine": NAME}])[
            "n"
        ]
    ) == (
        404,
        f'group 1 does not run "{NAME}"; it runs "kv"',
    )
