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

from consensus.client import MAX_RETRY_SLEEP, NoQuorum, PaxosClient, Unavailable, retry_pause
from consensus.config import free_ports
from tests.fixtures.http import http_nodes

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
    with http_nodes(count, SlowNoQuorum) as servers:
        yield [("127.0.0.1", s.server_address[1]) for s in servers]


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


class OneNodeThenGone(BaseHTTPRequestHandler):
    """A node that lists itself and a peer (``PEER``) on ``/api/nodes/`` and accepts a put."""

    PEER: tuple[str, int] = ("127.0.0.1", 0)
    puts: list[int] = []

    def _answer(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        me = {"node_id": 1, "host": "localhost", "port": 1, "me": True}
        peer = {"node_id": 2, "host": self.PEER[0], "port": self.PEER[1], "me": False}
        self._answer(200, [me, peer])

    def do_PUT(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.puts.append(self.server.server_address[1])
        self._answer(200, {"instance": len(self.puts), "request_id": "r", "result": None})

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("discover", [True, False])
def test_a_client_given_one_node_learns_the_others_and_fails_over_to_them(
    discover: bool,
) -> None:
    """The seed's ``MyPaxosClient(host, port)`` names one node: once that node has answered,
    the client knows the others (``/api/nodes/``, skipping the entry marked ``me``, whose
    config address may differ from the one dialled) and goes on when the first one is gone."""
    with http_nodes(2, OneNodeThenGone) as servers:
        first, second = (("127.0.0.1", s.server_address[1]) for s in servers)
        OneNodeThenGone.PEER = second
        OneNodeThenGone.puts = []
        with PaxosClient(*first, token="t", retry_timeout=1.0, discover=discover) as client:
            client.put("k", "v")
            assert client.nodes == ([first, second] if discover else [first])
            servers[0].shutdown()
            servers[0].server_close()
            client.close()  # the kept-alive connection to the first node goes too
            if discover:
                client.put("k", "w")
                assert OneNodeThenGone.puts == [first[1], second[1]]
            else:
                with pytest.raises(Unavailable):
                    client.put("k", "w")


def test_a_write_of_unknown_outcome_carries_its_request_id() -> None:
    """``NoQuorum`` (and ``Unavailable``) of a write name the id the client generated for it:
    the one to retry with."""
    with http_nodes(1, EchoingNoQuorum) as [server]:
        client = PaxosClient(*server.server_address[:2], token="t", retry_timeout=0.1)
        with client, pytest.raises(NoQuorum) as raised:
            client.put("k", "v")
    sent = raised.value.body["request_id"]  # the node echoes what it got
    assert raised.value.request_id == sent and len(sent) == 28
    (dead,) = free_ports(1)
    client = PaxosClient("127.0.0.1", dead, token="t", retry_timeout=0.1)
    with client, pytest.raises(Unavailable) as raised:
        client.cas("k", None, "v", request_id="mine")
    assert raised.value.request_id == "mine"


def test_the_pause_between_rounds_backs_off_and_is_capped() -> None:
    """0.1, 0.2, 0.4, 0.8 s, then ``MAX_RETRY_SLEEP``, also after an hour of rounds (2**1100
    seconds is no float); the server's Retry-After (capped) first; never past the deadline."""
    assert [retry_pause(rounds, 0.0, 60) for rounds in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert retry_pause(5000, 0.0, 60) == MAX_RETRY_SLEEP
    assert retry_pause(1, 0.5, 60) == 0.5 and retry_pause(1, 30.0, 60) == MAX_RETRY_SLEEP
    assert retry_pause(3, 0.0, 0.25) == 0.25
