"""The read batcher (``consensus.api.reads``): the queries of one loop turn for one group share
one read barrier and one ``StateMachine.query`` call, and each reader still gets its own answer
or its own error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from consensus.api.reads import ReadBatcher
from consensus.runtime import NoQuorumError, UnknownGroupError
from consensus.statemachine import QueryError
from tests.api.conftest import FakeNode

pytestmark = pytest.mark.django_db(transaction=True)


def get(key: str) -> str:
    return json.dumps({"op": "get", "key": key})


def count_queries(node: FakeNode, group_id: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    machine = node.machines[group_id]
    original = machine.query

    def query(queries: Any) -> Any:
        sizes.append(len(queries))
        return original(queries)

    monkeypatch.setattr(machine, "query", query)
    return sizes


def test_concurrent_reads_share_one_barrier_and_one_query(
    fake_node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    async_to_sync(fake_node.submit)(1, json.dumps({"op": "put", "key": "a", "value": "1"}))
    sizes = count_queries(fake_node, 1, monkeypatch)

    async def read_all() -> list[Any]:
        reads = ReadBatcher(fake_node)  # type: ignore[arg-type]
        return await asyncio.gather(
            *(reads.query(1, get("a" if i % 2 else "b"), linearizable=True) for i in range(20))
        )

    results = async_to_sync(read_all)()
    assert fake_node.barriers == 1 and sizes == [20]
    assert results[1] == {"key": "a", "value": "1", "found": True, "instance": 1}
    assert results[0] == {"key": "b", "value": None, "found": False, "instance": None}


def test_each_reader_gets_its_own_error(fake_node: FakeNode) -> None:
    async def read_all() -> list[Any]:
        reads = ReadBatcher(fake_node)  # type: ignore[arg-type]
        return await asyncio.gather(
            reads.query(1, get("a"), linearizable=False),
            reads.query(1, json.dumps({"op": "put", "key": "a", "value": "x"}), linearizable=False),
            reads.query(9, get("a"), linearizable=False),
            return_exceptions=True,
        )

    good, bad, unknown = async_to_sync(read_all)()
    assert good["found"] is False
    assert isinstance(bad, QueryError) and "only get" in str(bad)
    assert isinstance(unknown, UnknownGroupError)


def test_a_failed_barrier_fails_every_reader_of_the_batch(fake_node: FakeNode) -> None:
    fake_node.fail = NoQuorumError("group 1: no leader is known within 5s")

    async def read_all() -> list[Any]:
        reads = ReadBatcher(fake_node)  # type: ignore[arg-type]
        return await asyncio.gather(
            *(reads.query(1, get("a"), linearizable=True) for _ in range(3)),
            reads.query(1, get("a"), linearizable=False),  # local reads need no barrier
            return_exceptions=True,
        )

    *linearizable, local = async_to_sync(read_all)()
    assert all(isinstance(result, NoQuorumError) for result in linearizable)
    assert local["found"] is False
