"""``PaxosClient``'s failover against real (tiny) HTTP servers on 127.0.0.1 that answer 503
slowly, as nodes without a quorum do after their request timeout: the call gives up soon after
``retry_timeout``, not after a whole round of slow attempts."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consensus.client import NoQuorum, PaxosClient

SLOW = 0.3


class SlowNoQuorum(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(SLOW)
        body = b'{"error": "group 1: no leader is known within 0.3s"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def slow_nodes(count: int) -> Iterator[list[tuple[str, int]]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), SlowNoQuorum) for _ in range(count)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield [("127.0.0.1", s.server_address[1]) for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(5)


def test_no_attempt_starts_after_the_retry_timeout() -> None:
    with slow_nodes(6) as nodes:  # one round of attempts: 6 x 0.3 s
        first, *others = nodes
        client = PaxosClient(*first, token="t", nodes=others, timeout=5, retry_timeout=0.5)
        started = time.monotonic()
        with client, pytest.raises(NoQuorum, match="no leader"):
            client.put("k", "v")
        assert time.monotonic() - started < 0.5 + 2 * SLOW
