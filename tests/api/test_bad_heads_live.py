"""Request heads a node refuses, on a real node over a raw socket: each gets its error answer,
nothing hangs, nothing is logged as a crash, and the node goes on serving.

* daphne: a ``Daphne-Root-Path`` header that is not ASCII, in a request pipelined behind
  another, raised from ``daphne_http``'s ``_scope`` inside the first request's ``send()``: a
  traceback per connection, no answer, and a connection (and its file descriptor) that was
  never closed.
* uvicorn: a request head had no size limit (100 headers of 1 MiB were read whole and answered
  200); above ``daphne_http.MAX_HEAD_BYTES`` it is a 431 and the connection is closed, as under
  daphne.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pytest

from consensus.management.daphne_http import MAX_HEAD_BYTES
from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.e2e

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BAD_ROOT_PATH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nDaphne-Root-Path: \xff\r\n\r\n"
CRASHES = ("Traceback", "Exception inside application", "User callback error")


@contextmanager
def connected(cluster: Cluster) -> Iterator[socket.socket]:
    """A raw connection to node 1; a hang fails the test after 10 s instead of blocking it."""
    sock = socket.create_connection(("127.0.0.1", cluster.nodes[1].port), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def read_response(reader: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One response framed by its ``content-length``, and nothing of the next one."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


def closed_by_server(reader: BinaryIO) -> bool:
    """Whether the server closes the connection (within the socket's timeout)."""
    try:
        return reader.read(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def node_log(cluster: Cluster) -> str:
    return cluster.nodes[1].log_path.read_text(errors="replace")


def assert_no_crash_logged(cluster: Cluster) -> None:
    time.sleep(1.5)  # daphne's application checker logs a failed application within a second
    log = node_log(cluster)
    for crash in CRASHES:
        assert crash not in log, log[-3000:]


def test_a_bad_root_path_header_pipelined_after_a_request_is_a_400(cluster_factory: Any) -> None:
    cluster = cluster_factory(size=1, groups=(1,), server="daphne")
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(HEALTHZ + BAD_ROOT_PATH)
        assert read_response(reader)[0] == 200
        status, _, body = read_response(reader)
        assert status == 400 and b"Invalid Daphne-Root-Path header" in body, body
        sock.sendall(HEALTHZ)  # the connection still serves
        assert read_response(reader)[0] == 200
        sock.shutdown(socket.SHUT_WR)  # the server sees the client's end and closes its side
        assert closed_by_server(reader)
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(BAD_ROOT_PATH)  # alone: the same 400 (it was a "request body" error)
        assert read_response(reader)[0] == 400
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200
    assert_no_crash_logged(cluster)


def test_a_head_above_the_limit_gets_431_under_uvicorn(cluster_factory: Any) -> None:
    cluster = cluster_factory(size=1, groups=(1,), server="uvicorn")
    value = "v" * 1000
    big = HEALTHZ[:-2] + "".join(f"X-{n}: {value}\r\n" for n in range(70)).encode() + b"\r\n"
    long_line = b"GET /healthz?" + b"x" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for head in (big, long_line):
        assert len(head) > MAX_HEAD_BYTES
        with connected(cluster) as sock, sock.makefile("rb") as reader:
            sock.sendall(head)
            status, headers, body = read_response(reader)
            assert (status, headers.get("connection")) == (431, "close"), body
            assert body == b"Headers too large."
            assert closed_by_server(reader)
    near = HEALTHZ[:-2] + "".join(f"X-{n}: {value}\r\n" for n in range(60)).encode() + b"\r\n"
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(near + HEALTHZ)  # 60 KiB of headers pass, and the next request too
        assert read_response(reader)[0] == 200
        assert read_response(reader)[0] == 200
    assert cluster.nodes[1].alive()
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200
