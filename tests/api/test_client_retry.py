"""``PaxosClient``'s failover against real (tiny) HTTP servers on 127.0.0.1 that answer 503
slowly, as nodes without a quorum do after their request timeout: the call gives up soon after
``retry_timeout``, not after a whole round of slow attempts. And the ``paxos`` CLI's message
for such a 503: the request id to retry with."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

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


class EchoingNoQuorum(SlowNoQuorum):
    """A 503 that names the request id, as a node does after its request timeout."""

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        sent = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        body = json.dumps(
            {"error": "outcome unknown: retry with the same request_id", **sent}
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_cli_names_the_request_id_to_retry_with() -> None:
    """The CLI chose the request id: after a 503 of unknown outcome it must say which."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingNoQuorum)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(CommandError, match=r"retry with --request-id \S+ to apply it"):
            call_command("paxos", "--url", url, "--token", "t", "--timeout", "0.3", "put", "k", "v")
        with pytest.raises(CommandError, match="--request-id mine "):
            call_command(
                "paxos", "--url", url, "--token", "t", "--timeout", "0.3",
                "put", "k", "v", "--request-id", "mine",
            )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
