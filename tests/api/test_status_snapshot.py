"""``/api/status/`` (a sync DRF view, so a worker thread) and the ``/metrics`` collector read the
runtime's in-memory state on the node's event loop, never on their own thread: the loop mutates
that state, and a read from another thread can see a dict change size mid-iteration.

A real single-node ``PaxosNode`` runs on an event loop in a background thread, as daphne's loop
would; the test thread plays the worker thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from consensus import health, metrics
from consensus.health import NodeUnavailableError, read_on_loop
from consensus.registry import registry
from consensus.runtime import PaxosNode
from tests.api.conftest import TOKEN, ApiClient
from tests.fixtures.loop_node import LoopNode, one_node_config

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def api_token(settings: Any) -> None:
    settings.PAXOS_API_TOKENS = (TOKEN,)


@pytest.fixture
def status_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of every ``PaxosNode.status()`` call."""
    threads: list[int] = []
    original = PaxosNode.status

    def recording(self: PaxosNode) -> dict[str, Any]:
        threads.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(PaxosNode, "status", recording)
    return threads


def test_the_node_knows_its_event_loop(loop_node: LoopNode) -> None:
    assert loop_node.node.event_loop() is loop_node.loop


def test_status_view_snapshots_on_the_node_loop(
    client: Client, loop_node: LoopNode, status_threads: list[int]
) -> None:
    response = ApiClient(client).call("GET", "/api/status/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["node_id"] == 1
    assert [group["group_id"] for group in body["groups"]] == [1, 2]
    assert status_threads == [loop_node.thread_id]
    assert loop_node.thread_id != threading.get_ident()


def test_metrics_collector_snapshots_on_the_node_loop(
    loop_node: LoopNode, status_threads: list[int]
) -> None:
    payload, _ = metrics.render()  # from this thread, as a threaded exporter would
    text = payload.decode()
    assert 'paxos_node_up{node="1"} 1.0' in text
    assert 'paxos_chosen_index{group="2"}' in text
    assert status_threads == [loop_node.thread_id]


def test_metrics_on_the_loop_read_directly(loop_node: LoopNode, status_threads: list[int]) -> None:
    """The async ``/metrics`` view runs on the node's loop: no hop, no waiting on itself."""

    async def scrape() -> bytes:
        return metrics.render()[0]

    assert b'paxos_node_up{node="1"} 1.0' in loop_node.call(scrape(), timeout=5)
    assert status_threads == [loop_node.thread_id]


def test_a_stuck_loop_is_a_503_not_a_hang(
    client: Client, loop_node: LoopNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "LOOP_READ_TIMEOUT", 0.05)
    release = threading.Event()
    loop_node.loop.call_soon_threadsafe(release.wait, 5)  # blocks the loop until released
    try:
        started = time.monotonic()
        response = ApiClient(client).call("GET", "/api/status/")
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "1"
        assert "did not answer" in response.json()["error"]
        payload, _ = metrics.render()
        assert b'paxos_node_up{node="1"} 0.0' in payload
        assert time.monotonic() - started < 2
    finally:
        release.set()
    assert read_on_loop(loop_node.node, lambda node: node.node_id, timeout=5) == 1


def test_a_node_without_a_running_loop_is_read_in_place(tmp_path: Path) -> None:
    """Before ``start()`` (and for stand-ins without ``event_loop``) nothing mutates the state
    concurrently: the read runs on the caller's thread."""
    config = one_node_config(tmp_path)
    node = PaxosNode(config, {1: registry.create("kv", 1)})
    assert node.event_loop() is None
    assert read_on_loop(node, lambda live: threading.get_ident()) == threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        read_on_loop(node, lambda live: 1 // 0)


def test_errors_of_the_read_reach_the_caller(loop_node: LoopNode) -> None:
    with pytest.raises(KeyError):
        read_on_loop(loop_node.node, lambda live: live.replicas[99])
    with pytest.raises(NodeUnavailableError):
        read_on_loop(loop_node.node, lambda live: time.sleep(0.2), timeout=0.01)
