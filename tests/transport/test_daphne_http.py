"""``consensus.management.daphne_http``: HTTP/1.1 served by a real daphne server (in a child
process, on a loopback port) through the httptools protocol, checked on the wire.

Raw sockets send what clients send (pipelined requests, chunked bodies, ``Expect``, HTTP/1.0,
garbage); ``http.client`` reads the answers, so framing mistakes show up as parse errors.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as websocket_connect

from consensus.management.daphne_http import MAX_HEAD_BYTES
from consensus.management.processes import stop_nodes
from tests.fixtures.http import send_until_answered

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("http_server") / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.transport.http_server"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "paxos_site.settings"},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("LISTENING"), log.read_text()
        yield int(line.split()[1])
        assert process.poll() is None, f"the server died:\n{log.read_text()}"
    finally:
        stop_nodes({0: process}, timeout=10)  # by PID: SIGTERM, then SIGKILL


class _KeepOpen(io.BufferedReader):
    """One reader for several responses: ``http.client`` closes its file after each."""

    def close(self) -> None:
        pass


class Connection:
    """A raw client connection: send bytes, read whole responses with ``http.client``."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = _KeepOpen(socket.SocketIO(self.sock, "rb"))

    def makefile(self, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return self.reader

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        answer = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()

    def closed_by_server(self) -> bool:
        try:
            return self.reader.read(1) == b""
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def connection(port: int) -> Iterator[Connection]:
    conn = Connection(port)
    try:
        yield conn
    finally:
        conn.close()


def request(method: str, target: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def test_pipelined_requests_are_answered_in_order_on_one_connection(port: int) -> None:
    with connection(port) as conn:
        conn.send(
            request("GET", "/slow?n=1")  # answered last if the requests ran side by side
            + request("POST", "/slow?n=2", b'{"k": "v"}')  # and the third must wait for it
            + request("PUT", "/echo?n=3", b"x" * 70_000)
        )
        answers = [json.loads(conn.response()[2]) for _ in range(3)]
        assert [a["query_string"] for a in answers] == ["n=1", "n=2", "n=3"]
        assert [a["method"] for a in answers] == ["GET", "POST", "PUT"]
        assert [len(a["body"]) for a in answers] == [0, 10, 70_000]
        conn.send(request("GET", "/echo?n=4"))  # and the connection is still open
        assert json.loads(conn.response()[2])["query_string"] == "n=4"


def test_many_pipelined_requests_in_one_write_are_all_answered(port: int) -> None:
    with connection(port) as conn:
        conn.send(b"".join(request("POST", f"/echo?n={n}", b"%d" % n) for n in range(100)))
        answers = [json.loads(conn.response()[2]) for _ in range(100)]
    assert [(a["query_string"], a["body"]) for a in answers] == [
        (f"n={n}", str(n)) for n in range(100)
    ]


def test_requests_waiting_behind_a_slow_one_are_not_read_ahead(port: int) -> None:
    """Reading pauses while pipelined requests wait: a client cannot make the server hold more
    than the socket buffers do."""
    one = request("PUT", "/echo", b"x" * (1 << 20))
    sent = 0
    with connection(port) as conn:
        conn.send(request("GET", "/sleep"))
        conn.sock.settimeout(2)
        with contextlib.suppress(TimeoutError):
            for _ in range(64):
                conn.sock.sendall(one)
                sent += 1
    assert sent < 64, "the server read 64 MiB of requests queued behind one still running"


def tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state (Linux's ``tcp_info.tcpi_state``)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


TCP_ESTABLISHED = 1


def test_a_client_that_reads_no_answers_is_not_read_ahead_and_is_closed(port: int) -> None:
    """Answers the client does not take stop the server: no request starts, and nothing is read,
    while more than Twisted's buffer size of them is unsent. The next request started as soon as
    the answer before it was in Twisted's buffer, not sent, so the server read all 64 MiB and
    held every answer. And the connection is really closed after the idle timeout (a second
    here): ``loseConnection`` alone waited for ever for the client to take the buffer."""
    one = request("PUT", "/echo", b"x" * (1 << 20))  # answered with the body (as JSON)
    sent = 0
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(2)
        with contextlib.suppress(TimeoutError, ConnectionResetError, BrokenPipeError):
            for _ in range(64):
                sock.sendall(one)
                sent += 1
        assert sent < 64, "the server read 64 MiB of requests whose answers were not read"
        deadline = time.monotonic() + 5  # the idle timeout, then a quarter of it to abort
        while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tcp_state(sock) != TCP_ESTABLISHED, "still open five idle timeouts later"


def test_an_idle_connection_is_closed(port: int) -> None:
    """The server under test closes connections idle for a second (60 s in a node)."""
    with connection(port) as conn:
        conn.send(request("GET", "/echo"))
        assert conn.response()[0] == 200
        started = time.monotonic()
        assert conn.closed_by_server()
        assert time.monotonic() - started >= 0.9


def test_a_connection_in_use_stays_open(port: int) -> None:
    with connection(port) as conn:
        for n in range(5):  # two seconds in all, never a second idle
            conn.send(request("GET", f"/echo?n={n}"))
            assert json.loads(conn.response()[2])["query_string"] == f"n={n}"
            time.sleep(0.4)


def test_a_stalled_request_head_is_closed(port: int) -> None:
    with connection(port) as conn:
        conn.send(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert conn.closed_by_server()


def test_a_request_head_trickling_in_is_closed_after_the_idle_timeout(port: int) -> None:
    """One byte every 0.3 s is never a second of silence, but the head must be complete a
    second (60 s in a node) after it began, or anyone could hold connections for ever."""
    with connection(port) as conn:
        conn.send(b"GET /echo HTTP/1.1\r\n")
        started = time.monotonic()
        try:
            while time.monotonic() - started < 6:
                conn.send(b"X")
                time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 6, "still open after six idle timeouts"
        assert conn.closed_by_server()


def test_a_request_being_answered_is_not_idle(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/sleep?2"))  # twice the idle timeout
        assert conn.response()[0] == 200


def test_the_scope_is_daphnes(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/a%20b/c?x=%20y", b"", "X-Thing: 1", "Bad_Name: dropped"))
        status, _, body = conn.response()
    seen = json.loads(body)
    assert status == 200
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == "/a%20b/c"
    assert seen["query_string"] == "x=%20y"
    assert seen["http_version"] == "1.1"
    assert ["x-thing", "1"] in seen["headers"]  # names lower-cased, as daphne gives them
    assert not [name for name, _ in seen["headers"] if "_" in name]  # CVE-2015-0219, as daphne
    assert seen["client"][0] == "127.0.0.1"


def test_a_chunked_request_body_arrives_whole(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("POST", "/echo", b"", "Transfer-Encoding: chunked"))
        for piece in (b"hello ", b"chunked ", b"world"):
            conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
            time.sleep(0.05)  # separate reads: the application gets them as separate messages
        conn.send(b"0\r\n\r\n")
        status, _, body = conn.response()
    seen = json.loads(body)
    assert (status, seen["body"]) == (200, "hello chunked world")
    assert seen["messages"] >= 2


def test_a_response_without_length_is_chunked_and_ends(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/stream") + request("GET", "/echo?after"))
        status, headers, body = conn.response()
        assert (status, body) == (200, b"one,two,three")
        assert headers["transfer-encoding"] == "chunked"
        assert json.loads(conn.response()[2])["query_string"] == "after"


def test_a_one_message_response_gets_its_length_and_the_server_name(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/echo"))
        _, headers, body = conn.response()
    assert int(headers["content-length"]) == len(body)
    assert headers["server"] == "daphne"


@pytest.mark.parametrize(("code", "line"), [(201, b"201 Created"), (599, b"599 ")])
def test_the_status_line_has_the_code_and_its_phrase(port: int, code: int, line: bytes) -> None:
    with connection(port) as conn:
        conn.send(request("GET", f"/status?{code}"))
        assert conn.reader.readline() == b"HTTP/1.1 " + line + b"\r\n"


def test_head_has_headers_and_no_body(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("HEAD", "/echo") + request("GET", "/echo?next"))
        status, headers, body = conn.response(method="HEAD")
        assert (status, body) == (200, b"")
        assert int(headers["content-length"]) > 0
        assert json.loads(conn.response()[2])["query_string"] == "next"


def test_http_1_0_closes_after_the_response(port: int) -> None:
    with connection(port) as conn:
        conn.send(b"GET /stream HTTP/1.0\r\n\r\n")
        status, headers, body = conn.response()
        assert (status, body) == (200, b"one,two,three")
        assert "transfer-encoding" not in headers  # HTTP/1.0 knows no chunks: EOF ends it
        assert conn.closed_by_server()


def test_connection_close_is_honoured(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/echo", b"", "Connection: close"))
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (200, "close")
        assert conn.closed_by_server()


def test_expect_100_continue_is_answered_before_the_body(port: int) -> None:
    with connection(port) as conn:
        head = request("POST", "/echo", b"", "Expect: 100-continue", "Content-Length: 5")
        conn.send(head)
        assert conn.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert conn.reader.readline() == b"\r\n"
        conn.send(b"hello")
        status, _, body = conn.response()
    assert (status, json.loads(body)["body"]) == (200, "hello")


def test_expect_100_continue_is_not_sent_when_the_answer_needs_no_body(port: int) -> None:
    """An application that refuses from the head alone (the API's 413 for a declared size above
    its limit) answers first: the client is never invited to send its 10 MB."""
    with connection(port) as conn:
        conn.send(request("PUT", "/early", b"", "Expect: 100-continue", "Content-Length: 10000000"))
        first_line = conn.reader.readline()  # http.client would skip a 100 silently
        assert first_line.startswith(b"HTTP/1.1 413 "), first_line


def test_expect_100_continue_is_sent_to_an_answer_that_has_not_written_its_head(
    port: int,
) -> None:
    """An application may start its answer (``http.response.start``) and then read the body:
    nothing is on the wire yet, so the client must still be invited to send it."""
    with connection(port) as conn:
        conn.send(
            request("POST", "/start-then-read", b"", "Expect: 100-continue", "Content-Length: 5")
        )
        assert conn.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert conn.reader.readline() == b"\r\n"
        conn.send(b"hello")
        status, _, body = conn.response()
    assert (status, body) == (200, b"hello")


def test_an_early_answer_closes_a_connection_whose_body_is_unread(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("PUT", "/early", b"", "Content-Length: 10000000") + b"x" * 1000)
        status, _, _ = conn.response()
        assert status == 413
        assert conn.closed_by_server()  # the rest of the body would be read as a request


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)),
        b"GET / HTTP/9.x\r\n\r\n",
    ],
    ids=["tls-hello", "bad-version"],
)
def test_garbage_gets_400_and_the_server_goes_on(port: int, garbage: bytes) -> None:
    with connection(port) as conn:
        conn.send(garbage)
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (400, "close")
        assert conn.closed_by_server()
    with connection(port) as conn:
        conn.send(request("GET", "/echo"))
        assert conn.response()[0] == 200


def test_headers_beyond_64_kib_get_431(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/echo", b"", *(f"X-{n}: {'v' * 1000}" for n in range(70))))
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (431, "close")
        assert conn.closed_by_server()


def test_a_request_line_beyond_64_kib_gets_431(port: int) -> None:
    with connection(port) as conn:
        conn.send(b"GET /" + b"x" * 70_000)
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (431, "close")


def test_one_huge_header_gets_431_before_it_ends(port: int) -> None:
    """httptools hands a header over only once it ends: a header of 1 MiB was buffered whole
    before the limit was checked, and one that never ended was read for as long as it came."""
    start = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"v" * (1 << 20)
    for head in (start + b"\r\n\r\n", start):  # the whole request; the header, never ended
        with connection(port) as conn:
            began = time.monotonic()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.send(head)  # the server answers and closes before reading it all
            status, headers, body = conn.response()
            assert (status, headers["connection"]) == (
                431,
                "close",
            ) and b"Headers too large." in body
            assert conn.closed_by_server()
            assert time.monotonic() - began < 5  # not after the (1 s) idle timeout's close
    with connection(port) as conn:
        conn.send(request("GET", "/echo"))
        assert conn.response()[0] == 200


def test_a_trickled_head_gets_431_once_past_the_limit(port: int) -> None:
    """200 KiB of one header's value in pieces of 4 KiB, its end never sent: the answer comes
    once the head passes the limit, not before, and without the header's end."""
    with connection(port) as conn:
        start = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: "
        conn.send(start)
        sent = len(start) + send_until_answered(
            conn.sock, b"v" * 200 * 1024, piece=4096, pause=0.005
        )
        assert sent > MAX_HEAD_BYTES, sent  # no answer before the head passed the limit
        status, headers, body = conn.response()
        assert (status, headers["connection"]) == (431, "close") and b"Headers too large." in body
        assert conn.closed_by_server()


def test_requests_pipelined_before_a_head_above_the_limit_are_answered_then_431(
    port: int,
) -> None:
    """A head that began in the read where the request before it ended had its first bytes
    parsed uncounted: it is measured once complete; if it never ends, it is cut off once the
    bytes read after that read pass the limit."""
    big = request("GET", "/echo?big", b"", *(f"X-{n}: {'v' * 1000}" for n in range(70)))
    pipelined = request("PUT", "/slow?n=1", b"one") + request("GET", "/echo?n=2")
    for ended in (True, False):
        with connection(port) as conn:
            conn.send(pipelined + (big if ended else big[:-4]))
            answers = [conn.response() for _ in range(2)]
            assert [(s, json.loads(b)["query_string"]) for s, _, b in answers] == [
                (200, "n=1"),
                (200, "n=2"),
            ]
            if not ended:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.send(b"v" * 2 * MAX_HEAD_BYTES)  # the same header goes on
            status, headers, _ = conn.response()
            assert (status, headers["connection"]) == (431, "close")
            assert conn.closed_by_server()


def test_bodies_are_not_counted_as_head(port: int) -> None:
    """Bodies of 100 KiB in the same write as their heads, a head of 60 KiB among them, and
    requests pipelined behind them: all served."""
    body = b"x" * 100 * 1024
    padded = request("PUT", "/echo?n=2", body, f"X-Pad: {'v' * 60_000}")
    with connection(port) as conn:
        conn.send(request("PUT", "/echo?n=0", body))
        seen = json.loads(conn.response()[2])
        assert (seen["query_string"], len(seen["body"])) == ("n=0", len(body))
        conn.send(
            request("PUT", "/echo?n=1", body) + padded + request("GET", "/echo?n=3")
        )  # keep-alive, and requests pipelined behind bodies
        answers = [json.loads(conn.response()[2]) for _ in range(3)]
        assert [(a["query_string"], len(a["body"])) for a in answers] == [
            ("n=1", len(body)),
            ("n=2", len(body)),
            ("n=3", 0),
        ]


def test_a_path_that_is_not_ascii_gets_400(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/caf\xe9"))
        assert conn.response()[0] == 400


@pytest.mark.parametrize("target", ["/a%ff%feb", "/a%c3"])
def test_a_path_whose_escapes_are_not_utf8_gets_400(port: int, target: str) -> None:
    """Decoded leniently, every invalid sequence would read as U+FFFD: different paths (KV keys)
    would be one."""
    with connection(port) as conn:
        conn.send(request("GET", target))
        assert conn.response()[0] == 400
    with connection(port) as conn:
        conn.send(request("GET", "/echo/caf%C3%A9"))  # escapes of valid UTF-8 are fine
        assert conn.response()[0] == 200


def test_a_failing_application_gets_500(port: int) -> None:
    with connection(port) as conn:
        conn.send(request("GET", "/fail"))
        status, _, body = conn.response()
    assert status == 500
    assert b"Exception inside application" in body


def _disconnects(port: int) -> int:
    with connection(port) as conn:
        conn.send(request("GET", "/disconnects"))
        return int(conn.response()[2])


def _wait_for_disconnects(port: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while _disconnects(port) < count:
        assert time.monotonic() < deadline, "the application never heard of the disconnect"
        time.sleep(0.05)


def test_a_closed_connection_reaches_the_application_as_a_disconnect(port: int) -> None:
    before = _disconnects(port)
    with connection(port) as conn:
        conn.send(request("GET", "/hang"))
        time.sleep(0.2)
    _wait_for_disconnects(port, before + 1)


def test_a_websocket_upgrade_is_handed_to_daphne(port: int) -> None:
    with websocket_connect(f"ws://127.0.0.1:{port}/ws?x=1") as ws:
        for text in ("hello", "x" * 100_000):
            ws.send(text)
            assert ws.recv(timeout=10) == text


def test_another_upgrade_is_served_as_http(port: int) -> None:
    with connection(port) as conn:
        conn.send(
            request(
                "GET",
                "/echo?h2c",
                b"",
                "Connection: Upgrade, HTTP2-Settings",
                "Upgrade: h2c",
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            )
        )
        status, _, body = conn.response()
    assert (status, json.loads(body)["query_string"]) == (200, "h2c")


def test_requests_pipelined_before_garbage_are_answered_then_400(port: int) -> None:
    """The requests complete before the parse error are answered, in order; then the 400."""
    with connection(port) as conn:
        conn.send(
            b"".join(request("PUT", f"/slow?n={n}", b"%d" % n) for n in range(3))
            + b"GARBAGE\r\n\r\n"
        )
        answers = [conn.response() for _ in range(3)]
        assert [(s, json.loads(b)["query_string"]) for s, _, b in answers] == [
            (200, f"n={n}") for n in range(3)
        ]
        assert all(headers.get("connection") != "close" for _, headers, _ in answers)
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (400, "close")
        assert conn.closed_by_server()


def test_a_bad_chunk_in_a_queued_request_gets_400_after_the_complete_ones(port: int) -> None:
    with connection(port) as conn:
        conn.send(
            request("PUT", "/slow?n=1", b"one")
            + request("POST", "/echo?n=2", b"", "Transfer-Encoding: chunked")
            + b"3\r\ntwo\r\nnot a chunk size\r\n"
        )
        status, _, body = conn.response()
        assert (status, json.loads(body)["query_string"]) == (200, "n=1")
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (400, "close")
        assert conn.closed_by_server()


def test_a_bad_chunk_in_the_request_being_answered_gets_400(port: int) -> None:
    """Its application has started but not answered: the client hears why, then the close."""
    before = _disconnects(port)
    with connection(port) as conn:
        conn.send(request("POST", "/hang", b"", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
        time.sleep(0.2)
        conn.send(b"not a chunk size\r\n")
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (400, "close")
        assert conn.closed_by_server()
    _wait_for_disconnects(port, before + 1)


def test_a_bad_chunk_after_the_response_started_cuts_it_off(port: int) -> None:
    """Too late for a 400: the chunked answer stops without its last chunk, and the close."""
    with connection(port) as conn:
        conn.send(request("POST", "/partial", b"", "Transfer-Encoding: chunked"))
        assert conn.reader.readline() == b"HTTP/1.1 200 OK\r\n"
        while conn.reader.readline() != b"\r\n":
            pass  # the rest of the head
        assert conn.reader.readline() == b"8\r\n"
        assert conn.reader.readline() == b"started,\r\n"
        conn.send(b"5\r\nhello\r\n")
        assert conn.reader.readline() == b"5\r\n"
        assert conn.reader.readline() == b"hello\r\n"
        conn.send(b"not a chunk size\r\n")
        assert conn.closed_by_server()
