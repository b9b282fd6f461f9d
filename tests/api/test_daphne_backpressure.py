"""``daphne_http.HttpChannel``'s write backpressure, in-process: a transport that pauses its
producer as Twisted's TCP transport does (``BufferingTransport``: more than 64 KiB unsent) and a
stand-in for daphne's ``Server``.

The next pipelined request started (and reading resumed) as soon as the answer before it was in
Twisted's buffer, not sent: a client that pipelined requests for a large answer and never read
made the node buffer every answer (1 connection x 1,200 requests for a 285 KB static file: +337
MB), and the idle timeout's ``loseConnection`` then waited for ever for that buffer to drain.
Now the channel is the transport's streaming producer: while paused, nothing starts and nothing
is read; a client that takes nothing is idle, and a close that does not complete is aborted.
On the wire: test_daphne_http.py and test_daphne_backpressure_live.py.
"""

from __future__ import annotations

import time

from twisted.internet.interfaces import IHalfCloseableProtocol

from consensus.management import daphne_http
from consensus.management.daphne_http import HttpChannel
from tests.fixtures.daphne_channel import BufferingTransport, FakeServer, answer, connection

GET = b"GET /static/big.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BIG = b"x" * 100_000  # above the transport's 64 KiB
WEBSOCKET = (
    b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def buffered() -> tuple[HttpChannel, BufferingTransport, FakeServer]:
    transport = BufferingTransport()
    channel, _, server = connection(transport)
    return channel, transport, server


def answer_started(server: FakeServer, body: bytes = BIG) -> None:
    """Answer every request that reached an application and is not answered yet (whatever the
    channel started, which is what is under test)."""
    for exchange in server.applications:
        if not exchange.finished:
            answer(exchange, body)


def test_the_channel_is_the_transports_streaming_producer() -> None:
    channel, transport, _ = buffered()
    assert transport.producer is channel and transport.streaming


def test_a_pipelined_request_waits_until_the_answer_before_it_is_sent() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(GET * 3)
    answer_started(server)  # 100 KB: the transport pauses the channel
    assert len(server.applications) == 1, "the next request started with 100 KB unsent"
    assert transport.producerState == "paused"  # and nothing more is read
    transport.send_all()  # the client read it
    assert len(server.applications) == 2
    answer_started(server)
    transport.send_all()
    answer_started(server, b"small")  # the last: no pause, reading resumes
    assert len(server.applications) == 3 and transport.producerState == "producing"
    assert transport.value().count(b"HTTP/1.1 200 OK\r\n") == 3


def test_a_request_that_arrives_while_answers_are_unsent_waits_and_stops_reading() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(GET)
    answer_started(server)
    channel.dataReceived(GET)  # not pipelined: sent after the answer began arriving
    assert len(server.applications) == 1 and transport.producerState == "paused"
    transport.send_all()
    assert len(server.applications) == 2 and transport.producerState == "producing"


def test_small_answers_do_not_wait() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(GET * 5)
    for _ in range(5):
        answer_started(server, b"small")
    assert len(server.applications) == 5 and transport.producerState == "producing"
    assert transport.value().count(b"HTTP/1.1 200 OK\r\n") == 5


def test_a_client_that_takes_nothing_is_idle_and_its_close_is_aborted() -> None:
    """The client sent its requests long ago and reads nothing: its connection is closed after
    the idle timeout, and aborted when that close (which waits for the buffer to be sent) has
    not completed a quarter of the idle timeout later."""
    channel, transport, server = buffered()
    channel.dataReceived(GET * 3)
    for _ in range(3):
        answer_started(server)
    now = time.monotonic()
    channel.close_if_idle(now + daphne_http.IDLE_TIMEOUT + 1)
    assert channel.closed and transport.disconnecting
    assert transport.producer is None  # a paused producer would keep Twisted from closing
    assert not transport.disconnected  # not aborted yet: the answers may still be read
    grace = daphne_http.IDLE_TIMEOUT / 4
    channel.close_if_idle(channel.closed_at + grace - 1)
    assert not transport.disconnected
    channel.close_if_idle(channel.closed_at + grace + 1)
    assert transport.disconnected, "the close never completed and was not aborted"


def test_a_slow_client_that_takes_its_answers_is_not_idle() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(GET * 3)
    channel.last_read -= daphne_http.IDLE_TIMEOUT * 2  # the requests came long ago
    answer_started(server)
    transport.send_all()  # the client read the first answer just now
    answer_started(server)
    channel.close_if_idle(time.monotonic() + daphne_http.IDLE_TIMEOUT / 2)
    assert not channel.closed
    transport.send_all()
    answer_started(server)
    assert len(server.applications) == 3


def test_a_close_after_an_answer_unregisters_the_producer() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(GET[:-2] + b"Connection: close\r\n\r\n" + GET)
    answer_started(server)
    assert channel.closed and transport.disconnecting and transport.producer is None
    assert len(server.applications) == 1


def test_an_answer_before_the_body_is_read_lingers_for_the_rest_of_it() -> None:
    """The application refused a body it had not read (the API's 413): the channel closes its
    sending side only and drops what else comes, so that the client can finish sending and
    read the answer (closed at once, the kernel resets a connection with unread bytes); it is
    aborted if the client does not close within the close's grace."""
    channel, transport, server = buffered()
    channel.dataReceived(b"PUT /kv HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9000000\r\n\r\n")
    channel.dataReceived(b"x" * 1000)
    (refused,) = server.applications
    answer(refused, b"too large")
    assert b"connection: close\r\n" in transport.value()  # nothing may follow it
    assert channel.closed and channel.lingering and transport.write_closed
    assert transport.producer is None and not transport.disconnecting
    assert transport.producerState == "producing"  # reading goes on
    channel.dataReceived(b"x" * 100_000 + GET)  # the rest of the body, even a request after it
    assert sum(len(message.get("body", b"")) for message in refused.queue) == 1000
    assert len(server.applications) == 1
    channel.close_if_idle(channel.closed_at + daphne_http.IDLE_TIMEOUT / 4 + 1)
    assert transport.disconnected, "a client that never closes holds the connection"


def test_a_client_that_closes_its_side_of_a_lingering_connection_still_gets_the_answer() -> None:
    """Its FIN ends the connection once the answer is sent (``loseConnection``), not at once
    (``connectionLost`` dropped what was still in Twisted's buffer)."""
    channel, transport, server = buffered()
    channel.dataReceived(b"PUT /kv HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 90000\r\n\r\n")
    answer(server.applications[0], b"too large")
    assert IHalfCloseableProtocol.providedBy(channel)
    channel.readConnectionLost()
    assert transport.disconnecting and not transport.disconnected


def test_nothing_after_an_early_answer_in_the_same_read_is_served_or_upgraded() -> None:
    """The early answer closed the connection while httptools went on parsing the read: a
    pipelined request or websocket handshake after it is dropped, not served on a closing
    connection (a websocket was handed a half-closed transport, out of the idle sweep)."""
    channel, transport, server = buffered()
    bad_path = b"POST /%ff HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nabcde"
    channel.dataReceived(bad_path + GET + WEBSOCKET)
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert channel.lingering and server.applications == [] and server.websockets == []
    assert channel in channel.factory.channels  # still swept


def test_the_failure_after_pipelined_requests_waits_for_their_answers_to_be_sent() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(GET + b"NOT HTTP\r\n\r\n")
    answer_started(server)
    assert not channel.closed and b"400 Bad Request" not in transport.value()
    transport.send_all()
    assert channel.closed and b"HTTP/1.1 400 Bad Request\r\n" in transport.value()


def test_a_websocket_takes_the_connection_without_the_channel_as_its_producer() -> None:
    channel, transport, server = buffered()
    channel.dataReceived(WEBSOCKET)
    assert server.websockets and transport.producer is None
    assert server.websockets[0].received.startswith(b"GET /ws/ HTTP/1.1\r\n")
