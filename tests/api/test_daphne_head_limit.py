"""``daphne_http.HttpChannel``'s limit on request heads, in-process (a Twisted ``StringTransport``
and a stand-in for daphne's ``Server``), where the reads are exactly what a test feeds.

The limit was counted in httptools' callbacks, but httptools keeps a header until it ends and
calls ``on_header`` only then: one header of 20 MiB was buffered whole (copied piece by piece)
before any check, and a header that never ended grew without limit. The raw bytes of a head
count now, before the parser sees them: it never gets more than ``MAX_HEAD_BYTES`` of a head
(read whole or in pieces), a body is not counted, and what follows a head in the read that
crossed the limit (a body, the next request, a websocket's first frames) is still delivered.
The same on the wire: test_daphne_http.py and test_bad_heads_live.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from consensus.management.daphne_http import MAX_HEAD_BYTES, HttpChannel
from tests.fixtures.daphne_channel import FakeServer, answer
from tests.fixtures.daphne_channel import connection as plain_connection

HOST = b"Host: 127.0.0.1\r\n"


class CountingParser:
    """The channel's parser, counting the bytes it is fed."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.fed = 0

    def feed_data(self, data: Any) -> None:
        self.fed += len(data)
        self.parser.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


def connection() -> tuple[HttpChannel, StringTransport, FakeServer, CountingParser]:
    channel, transport, server = plain_connection()
    channel.parser = parser = CountingParser(channel.parser)
    return channel, transport, server, parser


def body_of(exchange: Any) -> bytes:
    return b"".join(message["body"] for message in exchange.queue)


def assert_431(transport: StringTransport, channel: HttpChannel) -> None:
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), out[:200]
    assert out.count(b"HTTP/1.1 ") == 1 and b"connection: close\r\n" in out
    assert transport.disconnecting and channel.closed


def head_of(size: int) -> bytes:
    """A complete request head of exactly ``size`` bytes."""
    start = b"GET /echo HTTP/1.1\r\n" + HOST + b"X-Pad: "
    return start + b"v" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.parametrize("reads", [1, 16], ids=["one-read", "4-KiB-reads"])
def test_a_header_that_never_ends_gets_431_and_the_parser_sees_no_more_than_the_limit(
    reads: int,
) -> None:
    channel, transport, _, parser = connection()
    data = b"GET /echo HTTP/1.1\r\n" + HOST + b"X-Big: " + b"v" * (1 << 20)
    piece = len(data) if reads == 1 else 4096
    for offset in range(0, len(data), piece):
        if transport.disconnecting:
            break
        channel.dataReceived(data[offset : offset + piece])
        assert not transport.value() or offset + piece > MAX_HEAD_BYTES  # no answer before
    assert_431(transport, channel)
    assert parser.fed == MAX_HEAD_BYTES


def test_a_huge_header_in_a_complete_request_gets_431() -> None:
    channel, transport, server, parser = connection()
    channel.dataReceived(head_of(MAX_HEAD_BYTES + (1 << 20)))
    assert_431(transport, channel)
    assert parser.fed == MAX_HEAD_BYTES and server.applications == []


def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_not() -> None:
    for split in (None, 1000):  # in one read; across two, the second crossing the limit
        channel, transport, server, _ = connection()
        head = head_of(MAX_HEAD_BYTES)
        if split is None:
            channel.dataReceived(head)
        else:
            channel.dataReceived(head[:split])
            channel.dataReceived(head[split:] + head_of(100))  # and a pipelined request
        assert not transport.value() and server.applications[0].url == b"/echo"
        answer(server.applications[0])
        assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
        assert len(server.applications) == (1 if split is None else 2)
    channel, transport, server, _ = connection()
    channel.dataReceived(head_of(MAX_HEAD_BYTES + 1))
    assert_431(transport, channel)


def test_a_body_after_a_head_that_crossed_the_read_is_not_counted() -> None:
    """The head's end, a body of 100 KiB and the next request in the read that took the head
    past the limit's room: the body and the next request get through whole."""
    channel, transport, server, _ = connection()
    body = b"b" * 100 * 1024
    put = b"PUT /kv HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % len(body) + body
    channel.dataReceived(b"GET /first HTTP/1.1\r\n" + HOST + b"X-Pad: " + b"v" * 60_000)
    channel.dataReceived(b"\r\n\r\n" + put + head_of(200))
    first, second, third = server.applications[0], *channel.queued
    assert (first.url, second.url, third.url) == (b"/first", b"/kv", b"/echo")
    answer(first)
    assert body_of(second) == body and second.body_complete
    answer(second)
    answer(third)
    assert transport.value().count(b"HTTP/1.1 200 OK\r\n") == 3 and not transport.disconnecting


def test_requests_before_a_head_above_the_limit_are_answered_then_431() -> None:
    channel, transport, server, parser = connection()
    channel.dataReceived(head_of(100) + head_of(200))
    channel.dataReceived(b"GET /big HTTP/1.1\r\n" + HOST + b"X-Big: " + b"v" * 200_000)
    assert not transport.value() and not transport.disconnecting
    assert transport.producerState == "paused"
    first, second = server.applications[0], *channel.queued
    answer(first)
    answer(second)
    out = transport.value()
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert out[out.rindex(b"HTTP/1.1 ") :].startswith(b"HTTP/1.1 431 ")
    assert transport.disconnecting and channel.closed


def test_a_head_that_began_after_a_message_in_the_same_read_is_measured() -> None:
    """Its first bytes were parsed uncounted (the read's first request ended before it): its
    URL and headers are measured when complete, over the two reads it came in."""
    channel, transport, server, _ = connection()
    headers = b"".join(b"X-%d: %b\r\n" % (n, b"v" * 1000) for n in range(70))
    big = b"GET /big HTTP/1.1\r\n" + HOST + headers + b"\r\n"
    channel.dataReceived(head_of(100) + big[:40_000])
    channel.dataReceived(big[40_000:])
    assert [exchange.url for exchange in server.applications] == [b"/echo"]
    assert not channel.queued
    answer(server.applications[0])
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out[out.rindex(b"HTTP/1.1 ") :].startswith(b"HTTP/1.1 431 ")
    assert transport.disconnecting


def test_a_websocket_head_that_crossed_the_read_hands_over_all_that_followed_it() -> None:
    channel, transport, server, parser = connection()
    head = (
        b"GET /ws?x=1 HTTP/1.1\r\n" + HOST + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"X-Pad: " + b"v" * 60_000 + b"\r\n\r\n"
    )
    frames = b"f" * 70_000
    channel.dataReceived(head[:1000])
    channel.dataReceived(head[1000:] + frames)
    (websocket,) = server.websockets
    assert websocket.received.startswith(b"GET /ws?x=1 HTTP/1.1\r\n")
    assert websocket.received.endswith(b"\r\n\r\n" + frames)
    assert channel.transport is None and not server.applications


@pytest.mark.parametrize("reads", [1, 16], ids=["one-read", "4-KiB-reads"])
def test_trailers_that_never_end_are_cut_off(reads: int) -> None:
    """A chunked body's trailers are headers after the body: httptools keeps one until it
    ends, so their raw bytes count as a head's do, from the last chunk on (a review)."""
    channel, transport, server, parser = connection()
    start = b"POST /kv HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    data = start + b"0\r\nX-Trailer: " + b"v" * (1 << 20)
    piece = len(data) if reads == 1 else 4096
    for offset in range(0, len(data), piece):
        if transport.disconnecting:
            break
        channel.dataReceived(data[offset : offset + piece])
    assert transport.disconnecting and channel.closed
    assert parser.fed <= len(start) + 2 * MAX_HEAD_BYTES
    received = server.applications[0].queue
    assert b"".join(m.get("body", b"") for m in received) == b"hello"
    assert received[-1]["type"] == "http.disconnect"  # the application hears the end


def test_a_chunked_body_of_many_chunks_is_not_counted() -> None:
    channel, transport, server, _ = connection()
    chunks = b"".join(b"%x\r\n%s\r\n" % (10_000, b"c" * 10_000) for _ in range(30))
    request = b"POST /kv HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    data = request + chunks + b"0\r\nX-Small: trailer\r\n\r\n" + head_of(100)
    for offset in range(0, len(data), 100_000):  # reads that cross chunks and the limit
        channel.dataReceived(data[offset : offset + 100_000])
    first = server.applications[0]
    assert body_of(first) == b"c" * 300_000 and first.body_complete
    answer(first)
    assert len(server.applications) + len(channel.queued) == 2 and not transport.disconnecting
