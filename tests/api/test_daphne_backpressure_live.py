"""A client that pipelines requests for a large answer and reads none of them, on a real node:
the node must not hold the answers. No login is needed (a static file of the admin, 285 KB).

Under daphne the next pipelined request started as soon as the answer before it was in Twisted's
buffer, not sent: one connection with 1,200 such requests (90 KB) grew the node by 337 MB.
Now the node stops (starts nothing, reads nothing) while more than Twisted's buffer size of
answers is unsent, as uvicorn's flow control does. In-process: test_daphne_backpressure.py;
the idle close of such a connection on the wire: tests/transport/test_daphne_http.py.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_bad_heads_live import read_response

pytestmark = pytest.mark.e2e

STATIC = "/static/admin/js/vendor/jquery/jquery.js"
GET = f"GET {STATIC} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
REQUESTS = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_client_that_reads_no_answers_does_not_grow_the_node(
    cluster_factory: Any, server: str
) -> None:
    cluster = cluster_factory(size=1, groups=(1,), server=server)
    node = cluster.nodes[1]
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        with sock.makefile("rb") as reader:  # once first: what serving the file needs is loaded
            sock.sendall(GET)
            status, _, body = read_response(reader)
        assert status == 200 and len(body) > 200_000, (status, len(body))
    size = len(body)
    before = rss_mb(node.pid)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", node.port))
        sock.settimeout(10)
        sock.sendall(GET * REQUESTS)  # 10 KB: all in the socket buffers at once
        grown = 0.0
        for _ in range(30):  # three seconds: long enough to buffer them all (before)
            time.sleep(0.1)
            grown = max(grown, rss_mb(node.pid) - before)
        # All of them would be 57 MB; a couple of answers, and the kernel's buffers, are not.
        assert grown < 20, f"{server}: the node grew {grown:.0f} MB for answers nobody read"
        with sock.makefile("rb") as reader:  # the client reads now: every answer comes, whole
            for _ in range(REQUESTS):
                status, _, body = read_response(reader)
                assert (status, len(body)) == (200, size)
    assert cluster.request(1, "GET", "/healthz", timeout=5)[0] == 200
