"""A linearizable read waits for the transaction that applies what its barrier covers to commit.

Clients get a command's result before its transaction commits (``PaxosNode._apply_all``: the
command is chosen and the application deterministic, so a crash replays it to the same result).
A read must not take that shortcut: the KV store's reads run on a connection of their own and see
only committed rows. These tests stretch the commit (the turn's rows are written after the
applications, in ``storage.persist``) and read meanwhile, through both read barriers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from consensus.api.reads import reads_of
from consensus.core import Command
from consensus.request_ids import new_request_id
from kvstore.api.views import encode_command
from tests.fixtures.loop_node import LoopNode

pytestmark = pytest.mark.django_db(transaction=True)

COMMIT_DELAY = 0.3


def put(key: str, value: str) -> str:
    return encode_command("put", key, value=value)


def get(key: str) -> str:
    return encode_command("get", key)


def stretch_commits(loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = loop_node.node.storage
    persist = storage.persist

    def slow_persist(readies: Any) -> Any:
        time.sleep(COMMIT_DELAY)  # on the writer thread, inside the turn's transaction
        return persist(readies)

    monkeypatch.setattr(storage, "persist", slow_persist)


@pytest.mark.parametrize("mode", ["index", "log"])
def test_a_read_after_an_acknowledged_write_sees_it_while_it_commits(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    node = loop_node.node
    node.read_mode = mode
    loop_node.call(node.submit(1, put("k", "old")))
    stretch_commits(loop_node, monkeypatch)

    async def write_then_read() -> Any:
        await node.submit(1, put("k", "new"))  # answered before its transaction commits
        return await reads_of(node).query(1, get("k"), linearizable=True)

    assert loop_node.call(write_then_read())["value"] == "new"


def test_a_log_barrier_read_sees_a_write_ordered_before_its_marker(
    loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write is not acknowledged yet, but it is in the log before the read's marker, in the
    same transaction: the marker's result arrives before that transaction commits. (Caught a
    read that trusted the marker's result: it returned "old", as under slow links in the
    Jepsen repro ``test_log_read_barrier_is_linearizable_under_slow_links``.)"""
    node = loop_node.node
    node.read_mode = "log"
    loop_node.call(node.submit(1, put("k", "old")))
    stretch_commits(loop_node, monkeypatch)

    async def write_and_read() -> Any:
        request_id = new_request_id()
        written = node._waiters.get(1, request_id)
        # Queued without waking the loop: the turn the read's marker starts proposes both, the
        # write first, and applies them in one transaction.
        node.replicas[1].submit(Command(request_id, put("k", "new")))
        read = await reads_of(node).query(1, get("k"), linearizable=True)
        await written
        return read

    assert loop_node.call(write_and_read())["value"] == "new"
