"""Batched state machine reads: the queries of one loop turn for one group share one read
barrier and one trip off the event loop.

A read costs a read barrier (a majority heartbeat round, for linearizable reads) and a database
query on a worker thread. Done per request, the thread hop and the query dominate: REST gets ran
at half of etcd's rate while the client stream, which already shared both per frame, ran several
times faster. So every reader (REST views, the client stream) goes through ``ReadBatcher.query``:
queries that arrive in the same turn of the event loop are collected, and one task serves them
with one barrier and one ``StateMachine.query`` call.

Linearizability is unchanged: the barrier starts after every query of the batch arrived, so it
orders each of them after every write acknowledged before it began.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from consensus.runtime import PaxosNode
from consensus.statemachine import QueryError
from consensus.storage.reconnect import reconnecting

_Batch = list[tuple[str, asyncio.Future[Any]]]

_batchers: weakref.WeakKeyDictionary[PaxosNode, ReadBatcher] = weakref.WeakKeyDictionary()


def reads_of(node: PaxosNode) -> ReadBatcher:
    """The node's batcher (one per node, made on first use)."""
    batcher = _batchers.get(node)
    if batcher is None:
        batcher = _batchers[node] = ReadBatcher(node)
    return batcher


class ReadBatcher:
    def __init__(self, node: PaxosNode) -> None:
        self.node = node
        self._open: dict[tuple[int, bool], _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def query(self, group_id: int, query: str, *, linearizable: bool) -> Any:
        """The state machine's answer to ``query``, after a read barrier if ``linearizable``.

        Raises what the runtime raises for the group (``UnknownGroupError``, ``SubmitError``)
        and ``QueryError`` for a query the state machine refuses."""
        if linearizable:
            self.node.check_serving(group_id)
        else:
            self.node.check_local_reads(group_id)
        key = (group_id, linearizable)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = []
            asyncio.get_running_loop().call_soon(self._serve, key)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch.append((query, future))
        return await future

    def _serve(self, key: tuple[int, bool]) -> None:
        batch = self._open.pop(key)
        task = asyncio.create_task(self._answer(key[0], key[1], batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, group_id: int, linearizable: bool, batch: _Batch) -> None:
        node = self.node
        try:
            machine = node.machines[group_id]
            if linearizable:
                await node.read_barrier(group_id)
            queries = [query for query, _future in batch]
            try:
                results = await off_loop(node, machine, machine.query, queries)
            except QueryError:  # find the bad ones: one at a time
                results = [await off_loop(node, machine, _one_query, machine, q) for q in queries]
        except Exception as error:  # noqa: BLE001 - every reader of the batch gets it
            for _query, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_query, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, QueryError):
                future.set_exception(result)
            else:
                future.set_result(result)


async def off_loop(node: PaxosNode, machine: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a read of ``machine`` off the event loop: a durable machine's rows through a database
    connection of its own, an in-memory machine on the thread that applies to it (no locks)."""
    if machine.durable:
        return await sync_to_async(reconnecting(fn))(*args)
    return await node.run_between_applications(fn, *args)


def _one_query(machine: Any, query: str) -> Any:
    try:
        return machine.query([query])[0]
    except QueryError as error:
        return error
