"""Peer links refuse a TCP connection to themselves (``consensus.transport.client``): dialling a
local port nobody listens on can, on Linux, connect the socket to itself (simultaneous open)
when the kernel picks that very port as the source; the link must drop it at once, count it as
a refused attempt and leave the port free for the peer that is about to listen on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest

from consensus.transport.client import (
    PeerLink,
    SelfConnectionError,
    _PeerConnect,
    is_self_connection,
)
from consensus.transport.peers import PeerAddress


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def self_connected_socket() -> Iterator[socket.socket]:
    """A real socket connected to itself: bound to the port it then dials."""
    port = free_port()
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.connect(("127.0.0.1", port))
        yield sock
    finally:
        sock.close()


def test_the_same_address_at_both_ends_is_a_self_connection() -> None:
    assert is_self_connection(("127.0.0.1", 40000), ("127.0.0.1", 40000))
    assert is_self_connection(("::1", 40000, 0, 0), ("::1", 40000, 0, 0))
    assert not is_self_connection(("127.0.0.1", 40000), ("127.0.0.1", 40001))
    assert not is_self_connection(("127.0.0.1", 40000), ("127.0.0.2", 40000))
    assert not is_self_connection(None, None)


def test_a_real_self_connected_socket_is_detected() -> None:
    with self_connected_socket() as sock:
        assert is_self_connection(sock.getsockname(), sock.getpeername())
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as client,
    ):
        assert not is_self_connection(client.getsockname(), client.getpeername())


async def test_a_link_dial_that_connects_to_itself_fails_and_frees_the_port() -> None:
    """The source port is forced to the destination (``local_addr``), as the kernel may pick."""
    port = free_port()
    with pytest.raises(SelfConnectionError):
        async with _PeerConnect(
            f"ws://127.0.0.1:{port}/ws/peer/", local_addr=("127.0.0.1", port), open_timeout=5
        ):
            pass
    await asyncio.sleep(0)  # the transport closes its socket on the loop's next turn
    with socket.socket() as server:  # the peer can listen there now (no TIME_WAIT either)
        server.bind(("127.0.0.1", port))
        server.listen()


def test_a_self_connection_counts_as_a_refused_attempt(caplog: pytest.LogCaptureFixture) -> None:
    link = PeerLink(node_id=1, peer=PeerAddress(2, "127.0.0.1", 1), secret=b"s")
    link._record_failure(SelfConnectionError("connected to itself"))
    assert link.stats.connect_failures == 1
    assert isinstance(SelfConnectionError(), ConnectionRefusedError)
    assert [r.levelno for r in caplog.records if r.name.startswith("consensus")] == [
        logging.WARNING
    ]
    assert not [r for r in caplog.records if r.exc_info]
