"""``manage.py paxos status`` and ``PaxosClient.status_of`` with nodes that are down (a free port:
connection refused) or hang (a socket that listens but never answers): one attempt per node, the
nodes asked in parallel, the live ones printed, the others named, and a non-zero exit."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from consensus.client import PaxosClient, Unavailable
from consensus.config import free_ports
from tests.fixtures.cluster import TOKEN, Cluster


@contextlib.contextmanager
def hanging_nodes(count: int) -> Iterator[list[tuple[str, int]]]:
    """Ports that accept connections (the kernel's backlog) but never answer a request."""
    sockets = [socket.create_server(("127.0.0.1", 0), backlog=8) for _ in range(count)]
    try:
        yield [("127.0.0.1", sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def status_cli(*urls: str, options: tuple[str, ...] = ()) -> tuple[str, CommandError, float]:
    """Run ``paxos status`` (which must fail); its output, its error and how long it took."""
    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(CommandError) as raised:
        call_command(
            "paxos", "--url", ",".join(urls), "--token", TOKEN, *options, "status", stdout=out
        )
    return out.getvalue(), raised.value, time.monotonic() - started


def test_status_of_a_dead_port_raises_unavailable_at_once() -> None:
    (dead,) = free_ports(1)
    with PaxosClient("127.0.0.1", dead, TOKEN, retry_timeout=30, discover=False) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=f"127.0.0.1:{dead}"):
            client.status_of("127.0.0.1", dead)
        assert time.monotonic() - started < 1.0


def test_status_of_a_hanging_node_makes_one_attempt() -> None:
    """Bounded by ``timeout`` (one attempt), not by ``retry_timeout``."""
    with hanging_nodes(1) as [(host, port)]:
        client = PaxosClient(host, port, TOKEN, timeout=0.5, retry_timeout=30, discover=False)
        started = time.monotonic()
        with client, pytest.raises(Unavailable, match="timed out"):
            client.status_of(host, port)
        assert time.monotonic() - started < 1.5


def test_status_asks_the_nodes_in_parallel() -> None:
    """Three nodes that hang for the whole per-node timeout (1 s): about 1 s, not 3."""
    with hanging_nodes(3) as nodes:
        urls = [f"http://{host}:{port}" for host, port in nodes]
        output, error, elapsed = status_cli(*urls, options=("--timeout", "1"))
    assert elapsed < 2.5, elapsed
    assert str(error) == "3 of 3 nodes unreachable: " + ", ".join(f"{h}:{p}" for h, p in nodes)
    assert [line.split()[0] for line in output.splitlines()[1:]] == [f"{h}:{p}" for h, p in nodes]


@pytest.mark.e2e
def test_status_with_a_dead_node_prints_the_live_ones_and_exits_non_zero(
    shared_cluster: Cluster,
) -> None:
    """The default ``--timeout`` (30 s) must not apply to a node that refuses connections."""
    (dead,) = free_ports(1)
    live = [node.url for node in shared_cluster.nodes.values()]
    urls = [live[0], f"http://127.0.0.1:{dead}", *live[1:]]  # printed in this order
    output, error, elapsed = status_cli(*urls)
    assert elapsed < 5.0, elapsed
    assert str(error) == f"1 of 4 nodes unreachable: 127.0.0.1:{dead}"
    lines = output.splitlines()
    assert lines[0].split() == ["node", "group", "role", "leader", "chosen", "applied"]
    live_addresses = [url.removeprefix("http://") for url in live]
    assert [line.split()[0] for line in lines[1:]] == [
        live_addresses[0],
        live_addresses[0],
        f"127.0.0.1:{dead}",
        *[address for address in live_addresses[1:] for _ in range(2)],  # groups 1 and 2
    ]
    assert f"127.0.0.1:{dead}" in lines[3] and "unreachable:" in lines[3]
    assert all(len(line.split()) == 6 for line in lines[1:] if "unreachable:" not in line)

    output, error, elapsed = status_cli(*urls, options=("--json",))
    assert elapsed < 5.0, elapsed
    answers = json.loads(output)
    assert list(answers) == [url.removeprefix("http://") for url in urls]
    assert "error" in answers[f"127.0.0.1:{dead}"]
    assert all(answers[address]["groups"] for address in live_addresses)


@pytest.mark.e2e
def test_status_tells_a_node_that_answered_with_an_error_from_an_unreachable_one(
    shared_cluster: Cluster,
) -> None:
    """A 401 (a wrong token) is an answer: "error", not "unreachable"."""
    (dead,) = free_ports(1)
    live = next(iter(shared_cluster.nodes.values())).url
    output, error, _elapsed = status_cli(
        live, f"http://127.0.0.1:{dead}", options=("--token", "wrong")
    )
    lines = output.splitlines()
    assert " error: " in lines[1] and "HTTP 401" in lines[1], lines
    assert " unreachable: " in lines[2], lines
    assert str(error).startswith("2 of 2 nodes without a status (unreachable or failing): ")
