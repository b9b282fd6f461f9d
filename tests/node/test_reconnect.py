"""A database connection broken under a node's own threads (the PostgreSQL server restarted,
a network cut) is replaced on the next call: those threads never see the request signals with
which Django drops broken connections (consensus/storage/reconnect.py). A review found every
lean KV read answering 500 after a PostgreSQL restart until the node restarted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from asgiref.sync import sync_to_async
from django.db import Error, connection, connections

from consensus.api.reads import off_loop
from consensus.storage.reconnect import hung_up, reconnecting

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def select_one() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return int(cursor.fetchone()[0])


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate(pid: int) -> None:
    """What a server restart does to a connection, from another thread's connection."""
    with ThreadPoolExecutor(1) as other:
        other.submit(_terminate, pid).result()


def _terminate(pid: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        connections.close_all()


@pytest.fixture
def thread() -> Iterator[Callable[[Callable[[], T]], T]]:
    """One thread that keeps its connection between calls, as the node's threads do."""
    executor = ThreadPoolExecutor(1)

    def run(fn: Callable[[], T]) -> T:
        return executor.submit(fn).result()

    yield run  # type: ignore[misc]
    executor.submit(connections.close_all).result()
    executor.shutdown()


def wait_for_hang_up(timeout: float = 10.0) -> None:
    """Until the thread's connection sees its server's goodbye (the backend exits a moment
    after ``pg_terminate_backend`` returns)."""
    deadline = time.monotonic() + timeout
    while not hung_up(connection):
        assert time.monotonic() < deadline, "the server never closed the connection"
        time.sleep(0.01)


def terminate_own_backend() -> None:
    """A connection that breaks while a call runs (the server goes away mid-call)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


@pytest.mark.postgres
@pytest.mark.parametrize("wrapped", [True, False])
def test_the_first_call_after_the_server_hung_up_reconnects(thread: Any, wrapped: bool) -> None:
    """A connection the server closed while it was idle is replaced before the call: after a
    PostgreSQL restart, the first turn of each node's writer failed and stopped the node (all
    of them, at the first write of a quiet cluster), and the first read on each thread
    answered 500."""
    call = reconnecting(select_one) if wrapped else select_one
    assert thread(call) == 1
    terminate(thread(backend_pid))
    thread(wait_for_hang_up)
    if wrapped:
        assert thread(call) == 1
        assert thread(call) == 1
    else:  # the negative control: without it, the thread's connection stays broken for good
        for _ in range(2):
            with pytest.raises(Error):
                thread(call)


@pytest.mark.postgres
def test_the_call_after_a_connection_broke_mid_call_reconnects(thread: Any) -> None:
    """A connection that breaks while a call runs fails that call (nobody could tell before)
    and is replaced after it."""
    with pytest.raises(Error):
        thread(reconnecting(terminate_own_backend))
    assert thread(reconnecting(select_one)) == 1


@pytest.mark.postgres
def test_a_healthy_idle_connection_is_kept(thread: Any) -> None:
    """The look before each call costs a healthy connection nothing: the same backend serves."""
    pid = thread(reconnecting(backend_pid))
    time.sleep(0.1)
    assert thread(reconnecting(backend_pid)) == pid


@pytest.mark.postgres
async def test_a_durable_machines_reads_reconnect() -> None:
    """The reads of the KV store (lean routes, the stream) run through ``off_loop`` on
    asgiref's shared thread."""
    machine = SimpleNamespace(durable=True)
    assert await off_loop(None, machine, select_one) == 1  # type: ignore[arg-type]
    terminate(await sync_to_async(backend_pid)())
    await sync_to_async(wait_for_hang_up)()
    assert await off_loop(None, machine, select_one) == 1  # type: ignore[arg-type]
    await sync_to_async(connections.close_all)()


def test_a_failure_inside_a_transaction_leaves_its_connection_alone() -> None:
    """Closing it would end the transaction around the call: its block then committed nothing,
    and said nothing (a review)."""
    from django.db import transaction

    from consensus.models import Group

    def fails() -> None:
        raise ValueError("a state machine's own error")

    with transaction.atomic():
        Group.objects.create(group_id=5, state_machine="kv")
        with pytest.raises(ValueError, match="own error"):
            reconnecting(fails)()
    assert Group.objects.filter(group_id=5).exists()


@pytest.mark.postgres
def test_a_request_starts_on_a_connection_its_server_did_not_close(thread: Any) -> None:
    """The threads of Django's own views (DRF views, the admin) look at their connections as a
    request starts (``request_started``), where Django's ``close_old_connections`` does not see
    a connection the server closed: the first request on each such thread answered 500."""
    from django.core.signals import request_started

    assert thread(select_one) == 1
    terminate(thread(backend_pid))
    thread(wait_for_hang_up)
    thread(lambda: request_started.send(sender=None))
    assert thread(select_one) == 1
