"""Request heads a node refuses, on a real node over a raw socket: each gets its error answer,
nothing hangs, nothing is logged as a crash, and the node goes on serving.

* daphne: a ``Daphne-Root-Path`` header that is not ASCII, in a request pipelined behind
  another, raised from ``daphne_http``'s ``_scope`` inside the first request's ``send()``: a
  traceback per connection, no answer, and a connection (and its file descriptor) that was
  never closed.
* uvicorn: a request head had no size limit (100 headers of 1 MiB were read whole and answered
  200); above ``daphne_http.MAX_HEAD_BYTES`` it is a 431 and the connection is closed, as under
  daphne.
* both: the limit was counted in the parser's callbacks, which httptools calls only once a
  header ends: one header of 20 MiB was buffered whole first (seconds of CPU), and a header
  that never ended was read without limit. The raw bytes of a head count now, its body's not.
  The tests of the limit run on both servers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pytest

from consensus.management.daphne_http import MAX_HEAD_BYTES
from tests.fixtures.cluster import TOKEN, Cluster, kv_put
from tests.fixtures.http import send_until_answered

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
    """One response framed by its ``content-length`` or chunked, and nothing of the next one."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") != "chunked":
        body = reader.read(int(headers.get("content-length", 0)))
        return int(status_line.split()[1]), headers, body
    chunks = []
    while size := int(reader.readline().split(b";")[0], 16):
        chunks.append(reader.read(size))
        reader.readline()
    reader.readline()  # the empty line after the last chunk (no trailers)
    return int(status_line.split()[1]), headers, b"".join(chunks)


def closed_by_server(reader: BinaryIO) -> bool:
    """Whether the server closes the connection (within the socket's timeout)."""
    try:
        return reader.read(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    """``sendall``, where the server may answer and close before it has read everything."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def assert_431_and_closed(reader: BinaryIO) -> None:
    status, headers, body = read_response(reader)
    assert (status, headers.get("connection")) == (431, "close"), body
    assert b"Headers too large." in body  # plain text (uvicorn), daphne's error page (daphne)
    assert closed_by_server(reader)


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


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """One node on each server for the tests that only send it requests (a start costs
    seconds)."""
    server = request.param
    cluster = Cluster(tmp_path_factory.mktemp(server), size=1, groups=(1,), server=server)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def test_a_head_above_the_limit_gets_431(node: Cluster) -> None:
    cluster = node
    value = "v" * 1000
    big = HEALTHZ[:-2] + "".join(f"X-{n}: {value}\r\n" for n in range(70)).encode() + b"\r\n"
    long_line = b"GET /healthz?" + b"x" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for head in (big, long_line):
        assert len(head) > MAX_HEAD_BYTES
        with connected(cluster) as sock, sock.makefile("rb") as reader:
            sock.sendall(head)
            assert_431_and_closed(reader)
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(HEALTHZ + big)  # behind a request, in the same read: measured all the same
        status, headers, body = read_response(reader)
        if status == 200:  # uvicorn may answer a refused head before the requests before it
            status, headers, body = read_response(reader)
        assert (status, headers.get("connection")) == (431, "close"), body
        assert b"Headers too large." in body
        assert closed_by_server(reader)
    near = HEALTHZ[:-2] + "".join(f"X-{n}: {value}\r\n" for n in range(60)).encode() + b"\r\n"
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(near + HEALTHZ)  # 60 KiB of headers pass, and the next request too
        assert read_response(reader)[0] == 200
        assert read_response(reader)[0] == 200
    assert cluster.nodes[1].alive()
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200


def test_one_huge_header_gets_431_before_it_ends(node: Cluster) -> None:
    """httptools hands a header over only once it ends: a header of 1 MiB was read whole
    before the limit was checked, and one that never ended was read for as long as it came."""
    cluster = node
    start = HEALTHZ[:-2] + b"X-Big: " + b"v" * 1024 * 1024
    for head in (start + b"\r\n\r\n", start):  # the whole request; the header, never ended
        with connected(cluster) as sock, sock.makefile("rb") as reader:
            began = time.monotonic()
            send_ignoring_close(sock, head)
            assert_431_and_closed(reader)
            assert time.monotonic() - began < 5
    assert cluster.nodes[1].alive()
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200
    assert_no_crash_logged(cluster)


def test_a_trickled_head_gets_431_once_past_the_limit(node: Cluster) -> None:
    """200 KiB of one header's value in pieces of 4 KiB, its end never sent: the answer comes
    once the head passes the limit, not before, and without the header's end."""
    cluster = node
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        start = HEALTHZ[:-2] + b"X-Trickle: "
        sock.sendall(start)
        sent = len(start) + send_until_answered(sock, b"v" * 200 * 1024, piece=4096, pause=0.01)
        assert sent > MAX_HEAD_BYTES, sent  # no answer before the head passed the limit
        assert_431_and_closed(reader)  # within the socket's timeout: the end never came
    assert cluster.nodes[1].alive()
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200


def test_trailers_that_never_end_are_cut_off(node: Cluster) -> None:
    """A chunked body's trailers are headers too, kept whole by httptools until they end: the
    node stops reading them past the limit (400 for the broken body under daphne, 431 under
    uvicorn) instead of buffering them without end (a review)."""
    cluster = node
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(
            b"POST /api/groups/1/commands/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: " % TOKEN.encode()
        )
        sent = send_until_answered(sock, b"v" * 1024 * 1024, piece=16 * 1024, pause=0.01)
        assert sent < 1024 * 1024, sent  # cut off before the megabyte was all sent
        status_line = reader.readline()
        assert status_line == b"" or status_line.split()[1] in (b"400", b"431"), status_line
    assert cluster.nodes[1].alive()
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200


def test_a_body_is_not_counted_as_head(node: Cluster) -> None:
    """A request with a body of 100 KiB, alone and with the next request in the same read: the
    head limit does not count the body, nor a body's bytes against the request behind it."""
    cluster = node
    body = json.dumps({"command": kv_put("big", "v" * 100 * 1024)}).encode()
    post = (
        b"POST /api/groups/1/commands/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (TOKEN.encode(), len(body))
    ) + body
    assert len(body) > MAX_HEAD_BYTES
    with connected(cluster) as sock, sock.makefile("rb") as reader:
        sock.sendall(post)
        status, _, answer = read_response(reader)
        assert status == 200, answer
        sock.sendall(post + HEALTHZ)  # keep-alive, and a request pipelined behind the body
        assert read_response(reader)[0] == 200
        assert read_response(reader)[0] == 200
        sock.sendall(HEALTHZ + post + HEALTHZ)
        for _ in range(3):
            assert read_response(reader)[0] == 200
    assert_no_crash_logged(cluster)
