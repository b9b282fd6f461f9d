"""The link proxies of ``tests.fixtures.nemesis`` against a plain TCP echo server."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.nemesis import ProxyNetwork


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def network(echo_port: int) -> Iterator[ProxyNetwork]:
    with ProxyNetwork([1, 2, 3]) as net:
        net.set_targets({1: echo_port, 2: echo_port, 3: echo_port})
        yield net


def roundtrip(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def broken(port: int, sock: socket.socket | None = None) -> bool:
    """Whether a round trip fails (reset, closed, refused) on ``sock`` or a new connection."""
    try:
        if sock is None:
            return roundtrip(port) == b""
        sock.sendall(b"b")
        return sock.recv(10) == b""
    except OSError:
        return True


def test_every_directed_link_has_its_own_port(network: ProxyNetwork) -> None:
    ports = network.link_ports
    assert set(ports) == {(a, b) for a in (1, 2, 3) for b in (1, 2, 3) if a != b}
    assert len(set(ports.values())) == 6
    assert all(roundtrip(port) == b"ping" for port in ports.values())


def test_cut_resets_open_connections_and_refuses_new_ones_until_healed(network) -> None:
    port = network.link_ports[(1, 2)]
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        sock.sendall(b"a")
        assert sock.recv(10) == b"a"
        network.cut([(1, 2)])
        assert broken(port, sock)  # reset by the proxy
    finally:
        sock.close()
    assert broken(port)  # new connections too
    assert roundtrip(network.link_ports[(2, 1)]) == b"ping"  # the other direction is separate
    network.heal()
    assert roundtrip(port) == b"ping"
    assert network.stats()[(1, 2)].reset >= 1


def test_partition_and_bridge(network: ProxyNetwork) -> None:
    cut = network.partition([{1}, {2, 3}])
    assert sorted(cut) == [(1, 2), (1, 3), (2, 1), (3, 1)]
    cut = network.partition([{1, 2}, {2, 3}])  # 2 bridges 1 and 3
    assert sorted(cut) == [(1, 3), (3, 1)]
    assert sorted(network.cut_pairs()) == [(1, 3), (3, 1)]
    assert roundtrip(network.link_ports[(1, 2)]) == b"ping"
    network.heal()
    assert network.cut_pairs() == []


def test_delay_holds_bytes_in_order(network: ProxyNetwork) -> None:
    network.delay(0.3, [(1, 2)])
    started = time.monotonic()
    assert roundtrip(network.link_ports[(1, 2)], b"slow") == b"slow"
    assert time.monotonic() - started >= 0.55  # both directions of the connection are delayed
    network.heal()
    started = time.monotonic()
    assert roundtrip(network.link_ports[(1, 2)]) == b"ping"
    assert time.monotonic() - started < 0.3


def test_close_stops_the_thread_and_the_servers(echo_port: int) -> None:
    network = ProxyNetwork([1, 2])
    network.set_targets({1: echo_port, 2: echo_port})
    port = network.link_ports[(1, 2)]
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    network.close()
    network.close()  # idempotent
    assert not any(t.name == "proxy-network" and t.is_alive() for t in threading.enumerate())
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
