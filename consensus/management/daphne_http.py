"""HTTP/1.1 for daphne's ``Server``, parsed by httptools instead of Twisted's ``HTTPChannel``.

daphne serves HTTP with ``twisted.web.http``: a Python call per header line, a ``Request``
object with its header maps, content file and notification lists per request, a Deferred
around the application's creation, and a status line and headers formatted through Twisted's
sanitising helpers. py-spy put Twisted's HTTP code and daphne's request handling at about 30%
of a node's GIL time under REST load (128 clients), which is most of what separates REST on
daphne from REST on uvicorn (0.33 against 0.25 ms of node CPU per put). httptools (llhttp, the
parser of Node.js, which uvicorn uses) parses a request in C and calls back once per header.
Twisted's access log line per request (formatted, then dropped by daphne) goes with it. REST
puts at 128 clients: 1.27× (interleaved A/B runs, see the README's benchmarks).

Only the HTTP side changes. Each request still becomes an application instance of daphne's
``Server`` (``create_application``, ``handle_reply``, its application and timeout checkers and
``ReapingServer``'s reaping; the protocol is made for ``ReapingServer``, whose
``protocol_disconnected`` takes an exchange that never got as far as an application), with the
ASGI scope daphne builds, and a websocket upgrade is handed to daphne's autobahn protocol
exactly as daphne's ``WebRequest`` hands it over: the request is rebuilt as bytes and fed to
the websocket protocol, which then owns the connection.
What the protocol does:

* keep-alive (HTTP/1.1 by default, ``Connection: close`` honoured) and pipelined requests,
  answered one after another in order (reading pauses while requests wait their turn, so a
  client cannot queue up more than one read's worth);
* write backpressure: the channel is the transport's streaming producer, so while the answers
  written exceed Twisted's send buffer (64 KiB unsent) the next request does not start and
  nothing more is read, until the client has taken them all. A client that pipelines requests
  for large answers and never reads made the node hold every answer (285 KB each) before;
* the request body streamed to the application as it arrives (``more_body``), so an
  application that refuses a large body (the API's 413) does so before it is all read; the
  connection is closed after a response sent before its request's body was complete, but
  lingering, as nginx's: the answer is followed by a half-close, and the rest of the body is
  read and dropped until the client closes (or the close's abort comes, below). Closed at
  once, the kernel resets a connection with unread bytes: a client still sending the body met
  a broken pipe, or a reset that took the answer it had not read yet;
* ``Expect: 100-continue`` answered as the request's turn comes, after the application's
  first step: one that answers from the head alone (the API's 413 for a declared size above
  its limit) answers before the client is invited to send the body, and the 100 is not sent;
* responses framed by the application's ``content-length``, else by one computed for a
  single-message body, else chunked (HTTP/1.1) or by closing the connection (HTTP/1.0); no
  body for ``HEAD``, 1xx, 204 and 304;
* a connection that sends nothing for ``IDLE_TIMEOUT`` (60 s, Twisted's figure) while no
  answer is due is closed: idle keep-alive connections and stalled requests, and one that has
  not taken its answers (nothing of a full send buffer sent) for as long; so is one whose
  request head is not complete ``IDLE_TIMEOUT`` after it began (bytes trickling in). A closed
  connection whose answers are still not sent a quarter of ``IDLE_TIMEOUT`` later (15 s, as
  Twisted's ``abortTimeout``) is aborted: ``loseConnection`` waits for the client to read them;
* a request that httptools cannot parse gets ``400`` (a request line and headers above
  ``MAX_HEAD_BYTES``: ``431``, counted as ``HttpChannel.dataReceived`` says) and the
  connection is closed, once the requests pipelined before it are answered: they were
  complete, so they are served, not dropped unanswered; a body that stops parsing (bad chunks)
  gets the same ``400`` (cut off instead if its answer has begun), and its application hears
  ``http.disconnect``. The node and its other connections go on;
* a path whose percent-escapes are not UTF-8 gets daphne's ``400`` page, except under
  ``/api/``: there the application answers it with the API's JSON 400 (as under uvicorn);
  a ``Daphne-Root-Path`` header (honoured as daphne honours it: a proxy in front may set the
  ASGI ``root_path`` with it) that is not ASCII, or whose escapes are not UTF-8, gets the
  ``400`` page on any path;
* a request that raises while it starts (a bug) gets ``500`` and its connection is closed,
  with one log line: it must not stay the connection's unanswered request. Nor can a request
  that never reached an application keep its connection from the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import unquote

import httptools
from daphne.http_protocol import WebRequest
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import LoopingCall
from zope.interface import alsoProvides, implementer

logger = logging.getLogger("consensus.runtime")

NO_BODY_STATUSES = frozenset({204, 304})
HTML = (b"content-type", b"text/html; charset=utf-8")
API_PREFIX = b"/api/"
"""Where the application answers errors as JSON, a path whose escapes are not UTF-8 included."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together, counted as raw bytes before the parser sees them
(``HttpChannel.dataReceived``); Twisted allowed 16 KiB of headers, llhttp has no limit. The
node under uvicorn has the same limit, counted the same way (``server._limited_http_protocol``)."""
HEAD_TOO_LARGE = (431, "Request Header Fields Too Large", "Headers too large.")
"""The answer to a head above ``MAX_HEAD_BYTES`` (status, title, text), under both servers."""
IDLE_TIMEOUT = 60.0
"""Seconds a connection may send nothing while no answer is due before it is closed: idle
keep-alive connections and stalled requests. Twisted's HTTP server had the same 60 s."""


def _format_status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


STATUS_LINES = {int(status): _format_status_line(int(status)) for status in http.HTTPStatus}


def status_line(status: int) -> bytes:
    return STATUS_LINES.get(status) or _format_status_line(status)


class HeadTooLarge(Exception):
    """The request line and headers passed ``MAX_HEAD_BYTES``."""


class HttpToolsFactory(ServerFactory):
    """The factory daphne's ``Server`` listens with: one ``HttpChannel`` per connection, and a
    sweep that closes idle ones (a sweep every few seconds instead of a timer per connection,
    which Twisted reset on every read)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.channels: set[HttpChannel] = set()
        self._sweep: LoopingCall | None = None

    def buildProtocol(self, addr: Any) -> HttpChannel:  # noqa: N802 - Twisted's name
        channel = HttpChannel(self.server)
        channel.factory = self
        return channel

    def startFactory(self) -> None:  # noqa: N802 - Twisted's name
        self._sweep = LoopingCall(self.close_idle)
        self._sweep.start(IDLE_TIMEOUT / 6, now=False)

    def stopFactory(self) -> None:  # noqa: N802 - Twisted's name
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()

    def close_idle(self) -> None:
        now = time.monotonic()
        for channel in list(self.channels):
            channel.close_if_idle(now)


@implementer(IPushProducer)
class HttpChannel(Protocol):
    """One HTTP/1.1 connection: parses requests, runs them one at a time, in order; and the
    transport's producer, which it pauses while its send buffer is full (``pauseProducing``)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.client: list[Any] | None = None
        self.local: list[Any] | None = None
        self.active: Exchange | None = None
        self.queued: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self.closed = False
        self.closed_at = 0.0
        self.lingering = False
        """Closed for writing after an answer sent before its request's body was read: what
        comes in is dropped (``_close``)."""
        self.last_read = time.monotonic()
        self.write_paused = False
        """The transport's send buffer is full (``pauseProducing``): no request starts and
        nothing is read until it has all been sent (``resumeProducing``)."""
        self.last_drained = 0.0
        """When the transport last sent all it had after being full: a client that takes its
        answers, however slowly, is not idle."""
        self._starting = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.head_room: int | None = MAX_HEAD_BYTES
        """The bytes the head being read (or the next one) may still take; ``None`` once its
        headers are complete, until its message ends."""
        self._message_ended = False
        """A message ended in the read being parsed: a head that begins after it in that read
        begins with bytes that were not counted."""
        self._head_uncounted = False
        """The head being read began after a message in the same read (``_message_ended``)."""
        self._head_too_large = False
        self.head_started: float | None = None
        """When the request head being read began (None between heads)."""
        self.failure: tuple[int, str, str] | None = None
        """The error page due once the requests queued before a parse error are answered."""

    # --- Twisted ------------------------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.factory.channels.add(self)
        self.transport.registerProducer(self, True)
        peer, host = self.transport.getPeer(), self.transport.getHost()
        if hasattr(peer, "host") and hasattr(peer, "port"):
            self.client = [str(peer.host), peer.port]
            self.local = [str(host.host), host.port]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Parse ``data``, with the limit on request heads: the raw bytes read while a head is
        incomplete count against ``MAX_HEAD_BYTES``, before the parser sees them. A count in
        the parser's callbacks came too late: httptools keeps a header's name and value until
        the header ends (``on_header`` comes only then, with the whole header), so one header
        of 20 MiB was copied piece by piece into a growing buffer before any check ran, and a
        header that never ended grew without limit. Now the parser sees at most
        ``MAX_HEAD_BYTES`` of a head: a read that would take the head past it is parsed up to
        the limit, and if the head has not ended there the answer is ``431``. Once the headers
        are complete nothing is counted: a body costs nothing per read.

        A head that begins in the same read as the end of the request before it (pipelining)
        had its first bytes parsed uncounted (where in the read it began is not known); its URL
        and headers are measured once they are complete instead (``on_headers_complete``). The
        parser saw at most one read (64 KiB in Twisted) of it beyond the limit."""
        if self.lingering:
            return  # the rest of a refused body
        self.last_read = time.monotonic()
        room = self.head_room
        if room is not None:  # a head is being read (or is next): its raw bytes count
            self._message_ended = False
            room -= len(data)
            if room < 0:
                self._receive_past_limit(data, room + len(data))
                return
            self.head_room = room
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded(data, upgrade)
        except httptools.HttpParserError as error:
            self._parse_failed(error)

    def _receive_past_limit(self, data: bytes, room: int) -> None:
        """A read with more bytes than the head may still take: the parser gets the ones it may
        take, and the rest (a body, the next requests) only once the head ended within them;
        else the answer is ``431`` (after the requests queued before it) and nothing more is
        read."""
        self.head_room = 0
        try:
            self.parser.feed_data(memoryview(data)[:room])
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded(data, upgrade)  # its offset is the same in all of ``data``
            return
        except httptools.HttpParserError as error:
            self._parse_failed(error)
        if self.closed or self.failure is not None:
            return  # answered (a bad request)
        if self.head_room == 0:  # not reset by on_headers_complete / on_message_complete
            if self.parsing is not None:  # trailers past the limit: the body cannot end
                self._parse_failed(HeadTooLarge())
                return
            self.transport.pauseProducing()
            self._fail_connection(*HEAD_TOO_LARGE)
            return
        self.dataReceived(data[room:])

    def _upgraded(self, data: bytes, upgrade: httptools.HttpParserUpgrade) -> None:
        """The head that ends at ``upgrade``'s offset in ``data`` asked for another protocol:
        a websocket gets the connection and the rest of ``data``."""
        if self.closed:
            return  # an answer before it ended the connection
        rest = data[upgrade.args[0] :] if upgrade.args else b""
        if self._wants_websocket():
            self._upgrade(rest)
        else:  # another protocol (h2c, say): served as HTTP/1.1, as daphne does
            self.parser = httptools.HttpRequestParser(self)
            if rest:
                self.dataReceived(rest)

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name (IPushProducer)
        """The transport holds more than its buffer size unsent (it calls this from ``write``):
        the answer being written is finished, but no request starts after it (nor is anything
        read, ``on_headers_complete``) until the client has taken it. An application's body
        messages still go into the buffer: daphne's ``send`` cannot wait for this."""
        self.write_paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name (IPushProducer)
        """All that was written is sent: go on with the requests waiting."""
        self.write_paused = False
        self.last_drained = time.monotonic()
        if self.active is None and not self.closed:
            self._go_on()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name (IPushProducer)
        pass  # the connection is lost: connectionLost follows

    def readConnectionLost(self) -> None:  # noqa: N802 - Twisted's (IHalfCloseableProtocol)
        """The client closed its side of a lingering connection: close once the answer is
        sent. (Not half-closeable, a FIN went straight to ``connectionLost``, and an answer
        still in Twisted's buffer was dropped.)"""
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802 - Twisted's (IHalfCloseableProtocol)
        pass  # the lingering close's own half-close: reading goes on

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        self.factory.channels.discard(self)
        self.closed = True
        self.queued.clear()
        if self.active is not None:
            self.active.connection_lost()
            self.active = None

    def _parse_failed(self, error: Exception) -> None:
        """Nothing after ``error`` can be parsed, so read no more. The requests complete before
        it were pipelined in good faith (and may change state): answer them, then the error.
        A request whose body broke is answered with the error itself; if it was only queued it
        never reached an application and is simply dropped."""
        if self.closed:
            return  # an answer already ended the connection (say, before its body was read)
        self.transport.pauseProducing()
        broken, self.parsing = self.parsing, None
        if broken is not None:
            logger.info("invalid HTTP request body from %s: %s", self.client, error)
            if broken is self.active:
                broken.keep_alive = False  # its body's end is unknown: nothing can follow it
                broken.basic_error(400, b"Bad Request", "Invalid HTTP request body.")
                return
            if broken in self.queued:
                self.queued.remove(broken)
            self._fail_connection(400, "Bad Request", "Invalid HTTP request body.")
        elif self._head_too_large:
            self._fail_connection(*HEAD_TOO_LARGE)
        else:
            logger.info("invalid HTTP request from %s: %s", self.client, error)
            self._fail_connection(400, "Bad Request", "Invalid HTTP request.")

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_uncounted = self._message_ended
        self.head_started = self.last_read

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_started = None
        self.head_room = None
        if self._head_uncounted and self._measured_head() > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise HeadTooLarge  # httptools raises HttpParserCallbackError from it
        if self.closed:
            return  # answered early and closing (this read went on parsing): dropped
        if self.parser.should_upgrade() and self._wants_websocket():
            return  # the websocket handshake: dataReceived hands the connection over
        exchange = Exchange(self, self._url, self._headers)
        self.parsing = exchange
        self.queued.append(exchange)
        if self.active is None and not self.write_paused:
            self._start_queued()
        else:  # pipelined (or unsent answers): read no further until it can start
            self.transport.pauseProducing()

    def on_chunk_header(self) -> None:
        # A chunk's size line, or the trailers after the last chunk: httptools keeps a trailer
        # until it ends, as it does a header, so their raw bytes count as a head's do.
        self.head_room = MAX_HEAD_BYTES

    def on_body(self, body: bytes) -> None:
        self.head_room = None  # a chunk's data: not counted
        if self.parsing is not None:
            self.parsing.body_received(body, more=True)

    def on_message_complete(self) -> None:
        self.head_room = MAX_HEAD_BYTES
        self._message_ended = True
        if self.parsing is not None:
            self.parsing.body_received(b"", more=False)
            self.parsing = None

    def _measured_head(self) -> int:
        """The bytes of the URL, header names and values of the head just parsed."""
        return len(self._url) + sum(len(name) + len(value) for name, value in self._headers)

    def _wants_websocket(self) -> bool:
        return any(
            name.lower() == b"upgrade" and value.lower() == b"websocket"
            for name, value in self._headers
        )

    # --- requests -----------------------------------------------------------------------------

    def _start_queued(self) -> None:
        """Start the next request, and the one after it if that one is answered at once (a
        bad path), and so on: a loop, not a recursion through ``exchange_done``."""
        if self._starting:
            return  # exchange_done, called from the start below: the loop goes on
        self._starting = True
        try:
            while self.active is None and self.queued and not (self.closed or self.write_paused):
                exchange = self.active = self.queued.popleft()
                try:
                    exchange.start()
                except Exception as error:  # a bug of ours: the connection must not hang on it
                    self._start_failed(exchange, error)
        finally:
            self._starting = False

    def _start_failed(self, exchange: Exchange, error: Exception) -> None:
        """``exchange`` raised while starting: answer it ``500`` (if nothing of its answer is
        out) and close the connection; one log line, not a traceback per connection. Left as
        it was, the exchange stayed active unanswered, reading stayed paused (the client's FIN
        unseen) and ``close_if_idle`` took it for a request being answered: the connection and
        its file descriptor leaked. Raised from a pipelined request's turn, the error also went
        up through the previous response's ``send()`` into its application."""
        logger.error(
            "could not start a request from %s (%r): closing the connection", self.client, error
        )
        exchange.keep_alive = False
        if self.parsing is exchange:
            self.parsing = None  # nothing more of it is read: closed at once, not lingering
        with contextlib.suppress(Exception):  # if even that fails, closing is all there is
            exchange.basic_error(500, b"Internal Server Error", "Could not start the request.")
        if exchange is self.active:
            self.active = None
        self.queued.clear()
        self._close()

    def exchange_done(self, exchange: Exchange) -> None:
        """``exchange``'s response is complete: close the connection or start the next one."""
        if exchange is not self.active or self.closed:
            return
        self.active = None
        if not exchange.body_complete:  # answered early (a 413), or its body broke (a 400)
            self._close(linger=exchange is self.parsing)  # the rest of a good body may come
        elif not exchange.keep_alive:
            self._close()
        elif (self.queued or self.failure is not None) and not self.write_paused:
            self._go_on()  # if paused, resumeProducing does once the answers are sent

    def _go_on(self) -> None:
        """The next request (reading resumes once none waits), or the error page due after the
        requests queued before a failure."""
        if self.queued:
            self._start_queued()
            if not self.queued and not self.closed and self.failure is None:
                self.transport.resumeProducing()
        elif self.failure is not None:
            self._fail_connection(*self.failure)

    def close_if_idle(self, now: float) -> None:
        """Close the connection if it sent nothing for ``IDLE_TIMEOUT`` seconds while no answer
        was due: idle between requests, or stalled in a request's head or body (its
        application then hears ``http.disconnect``); and a request head still incomplete
        ``IDLE_TIMEOUT`` after it began, however slowly its bytes come (a client that holds a
        connection with one byte every few seconds). A request whose answer is being worked
        on is never cut off here (daphne's own ``http_timeout`` is for that). A client that
        takes nothing of the answers filling the send buffer counts as silent (it sent nothing
        else: its requests wait, unread or unstarted).

        A connection closed a quarter of ``IDLE_TIMEOUT`` ago and still not lost is aborted:
        ``loseConnection`` sends what is buffered first, and a client that reads nothing would
        hold it (and its buffer and descriptor) for ever; a lingering one (``_close``) waits
        for the client to close, which one that keeps sending would not do. Twisted's HTTP
        server aborted 15 s after its idle timeout's close too."""
        if self.closed:
            if now - self.closed_at > IDLE_TIMEOUT / 4 and self.transport is not None:
                self.transport.abortConnection()
            return
        active = self.active
        # Only an application can be working on an answer: an exchange that never reached one
        # (``queue`` None) cannot hold the connection open.
        answering = active is not None and active.body_complete and active.queue is not None
        trickling = self.head_started is not None and now - self.head_started > IDLE_TIMEOUT
        quiet = now - max(self.last_read, self.last_drained)
        if trickling or (not answering and quiet > IDLE_TIMEOUT):
            self._close()

    def _upgrade(self, rest: bytes) -> None:
        """Hand the connection to daphne's websocket protocol, as daphne's ``WebRequest``
        does: rebuild the handshake request and feed it (and what followed) to it."""
        if self.active is not None:
            self._fail_connection(400, "Bad Request", "Upgrade after a pipelined request.")
            return
        query = self._url.partition(b"?")[2]
        protocol = self.server.ws_factory.buildProtocol(self.transport.getPeer())
        if protocol is None:
            self._fail_connection(500, "Internal Server Error", "Could not make WebSocket")
            return
        protocol._raw_query_string = query
        self.factory.channels.discard(self)  # the websocket's own timeouts apply from here
        transport, self.transport = self.transport, None
        transport.unregisterProducer()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        head = [self.parser.get_method(), b" ", self._url, b" HTTP/1.1\r\n"]
        for name, value in self._headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        protocol.dataReceived(b"".join(head) + rest)

    def _fail_connection(self, status: int, title: str, body: str) -> None:
        """Answer ``status`` and close, after the requests queued before the failure
        (``exchange_done`` of the last one calls this again)."""
        if self.active is not None:
            self.transport.pauseProducing()  # whatever follows is not read
            self.failure = (status, title, body)
            return
        self.failure = None
        page = error_page(status, title, body)
        head = status_line(status)
        framing = b"%b: %b\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (*HTML, len(page))
        self.transport.write(head + framing + page)
        self._close()

    def _close(self, *, linger: bool = False) -> None:
        """Close once what is written is sent (``close_if_idle`` aborts it if that takes too
        long). A registered producer would keep it open: a transport whose buffer drains while
        its producer is paused resumes the producer instead of closing.

        ``linger``: the client may still be sending a body that will not be read. Only the
        sending side closes; reading goes on, dropping what comes, until the client closes
        too, having read the answer (or ``close_if_idle`` aborts it)."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.closed_at = time.monotonic()
            self.transport.unregisterProducer()
            if linger:
                self.lingering = True
                alsoProvides(self, IHalfCloseableProtocol)  # a client's FIN must not drop it
                self.transport.loseWriteConnection()
                self.transport.resumeProducing()
            else:
                self.transport.loseConnection()


class Exchange:
    """One request and its response: what daphne's ``Server`` tracks as a "protocol"."""

    def __init__(self, channel: HttpChannel, url: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.channel = channel
        self.server = channel.server
        parser = channel.parser
        self.method = parser.get_method().decode("ascii", "replace")
        self.http_version = parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()
        self.url = url
        self.raw_headers = raw_headers
        self.expects_continue = self.http_version == "1.1" and any(
            name.lower() == b"expect" and value.lower() == b"100-continue"
            for name, value in raw_headers
        )
        self.queue: Any = None
        self.pending: list[dict[str, Any]] = []
        self.body_complete = False
        self.response_started = False
        self.finished = False
        self.started_at = 0.0
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] | None = []
        """Until the head is written; then None."""
        self.chunked = False
        self.sends_body = True

    # --- request ------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.monotonic()
        scope, error = self._scope()
        if scope is None:
            self.basic_error(400, b"Bad Request", error)
            return
        self.server.protocol_connected(self)
        self.queue = self.server.create_application(self, scope)
        for message in self.pending:
            self.queue.put_nowait(message)
        self.pending = []
        if self.expects_continue and not self.body_complete:
            # Callbacks run in order: the application's first step (scheduled just now) comes
            # first, so an answer it gives from the head alone goes out instead of the 100.
            asyncio.get_running_loop().call_soon(self._invite_body)

    def _invite_body(self) -> None:
        """``100 Continue``, unless the answer's head is out, or the request is over or complete.
        (An application that started its answer but waits for the body to write it still
        needs the body: the head is only written with the first body message.)"""
        if not (self.response_headers is None or self.finished or self.body_complete):
            self.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def body_received(self, body: bytes, *, more: bool) -> None:
        if self.finished:
            return
        if not more:
            self.body_complete = True
        elif not body:
            return
        message = {"type": "http.request", "body": body, "more_body": more}
        if self.queue is not None:
            self.queue.put_nowait(message)
        else:
            self.pending.append(message)

    def _scope(self) -> tuple[dict[str, Any] | None, str]:
        raw_path, _, query_string = self.url.partition(b"?")
        try:
            # Strictly: with the default "replace", different invalid bytes would all read as
            # U+FFFD, and two paths (two KV keys) would silently be one.
            path = unquote(raw_path.decode("ascii"), errors="strict")
        except UnicodeDecodeError:
            if not (raw_path.startswith(API_PREFIX) and raw_path.isascii()):
                return None, "Invalid characters in path (not ASCII, or escapes not UTF-8)"
            # Escapes that are not UTF-8 in an API path: the API refuses those itself, as JSON
            # (``consensus.api.lean.LeanRouter``, which sees them from uvicorn too: uvicorn
            # decodes leniently); it checks ``raw_path``.
            path = unquote(raw_path.decode("ascii"))
        try:
            query_string.decode("ascii")
        except UnicodeDecodeError:
            return None, "Invalid query string"
        root_path = self.server.root_path
        headers = []
        for name, value in self.raw_headers:
            name = name.lower()
            if b"_" in name:
                continue  # as daphne: CVE-2015-0219
            if name == b"daphne-root-path":  # as daphne: a proxy in front may set it
                try:
                    root_path = unquote(value.decode("ascii"), errors="strict")
                except UnicodeDecodeError:
                    return None, "Invalid Daphne-Root-Path header (not ASCII, or escapes not UTF-8)"
            else:
                headers.append((name, value))
        scope = {
            "type": "http",
            "http_version": self.http_version,
            "method": self.method,
            "path": path,
            "raw_path": raw_path,
            "root_path": root_path,
            "scheme": "http",
            "query_string": query_string,
            "headers": headers,
            "client": self.channel.client,
            "server": self.channel.local,
        }
        return scope, ""

    def connection_lost(self) -> None:
        if not self.finished:
            self.finished = True
            self._send_disconnect()
            self.server.protocol_disconnected(self)

    # --- daphne's Server calls these ----------------------------------------------------------

    def handle_reply(self, message: dict[str, Any]) -> None:
        if self.finished:
            return
        kind = message.get("type")
        if kind == "http.response.start":
            if self.response_started:
                raise ValueError("HTTP response has already been started")
            if "status" not in message:
                raise ValueError("Specifying a status code is required for a Response message.")
            self.response_started = True
            self.status = int(message["status"])
            self.response_headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            if not self.response_started:
                raise ValueError(f"HTTP response has not yet been started but got {kind}")
            self._write_body(message.get("body", b""), more=message.get("more_body", False))
        else:
            raise ValueError(f"Cannot handle message type {kind}!")

    def handle_exception(self, exception: BaseException) -> None:
        self.basic_error(500, b"Internal Server Error", "Exception inside application.")

    def check_timeouts(self) -> None:
        timeout = self.server.http_timeout
        if timeout and not self.finished and time.monotonic() - self.started_at > timeout:
            if self.response_started:
                logger.warning("Application timed out while sending response")
                self.keep_alive = False
                self._finish()
            else:
                self.basic_error(
                    503, b"Service Unavailable", "Application failed to respond within time limit."
                )

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        if self.finished:
            return
        if self.response_started:  # too late for an error page: cut the response off
            self.keep_alive = False
            self._finish()
            return
        self.handle_reply({"type": "http.response.start", "status": status, "headers": [HTML]})
        self._write_body(error_page(status, status_text.decode("ascii"), body), more=False)

    # --- response -----------------------------------------------------------------------------

    def _write_body(self, body: bytes, *, more: bool) -> None:
        """One body message, with the head before the first: one write for all of it."""
        if self.channel.transport is None or self.finished:
            return
        out = [] if self.response_headers is None else [self._head(len(body), more=more)]
        if body and self.sends_body:
            out += [b"%x\r\n" % len(body), body, b"\r\n"] if self.chunked else [body]
        if not more and self.chunked:
            out.append(b"0\r\n\r\n")
        if out:
            self.channel.transport.write(b"".join(out))
        if not more:
            self._finish()

    def _head(self, size: int, *, more: bool) -> bytes:
        """The status line and headers, with the framing the application left out: a length
        for a body given whole, else chunks (HTTP/1.1) or the connection's end (HTTP/1.0)."""
        headers, self.response_headers = self.response_headers or [], None
        may_have_body = self.status >= 200 and self.status not in NO_BODY_STATUSES
        self.sends_body = may_have_body and self.method != "HEAD"
        lines = [status_line(self.status)]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        names = {name.lower() for name, _ in headers}
        if may_have_body and b"content-length" not in names:
            if not more:
                lines.append(b"content-length: %d\r\n" % size)
            elif not self.sends_body:
                pass  # HEAD: the length is unknown, and no body follows
            elif self.http_version == "1.1":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0: the body ends with the connection
        server_name = self.server.server_name
        if server_name and b"server" not in names:
            lines += [b"server: ", server_name.encode(), b"\r\n"]
        if not self.body_complete:
            self.keep_alive = False  # answered before its body was read: nothing can follow
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _finish(self) -> None:
        self.finished = True
        self._send_disconnect()
        self.server.protocol_disconnected(self)
        self.channel.exchange_done(self)

    def _send_disconnect(self) -> None:
        if self.queue is not None:
            self.queue.put_nowait({"type": "http.disconnect"})


def error_page(status: int, title: str, body: str) -> bytes:
    """daphne's own error page."""
    return (WebRequest.error_template % {"title": f"{status} {title}", "body": body}).encode()


def install() -> None:
    """Make daphne's ``Server`` listen with ``HttpToolsFactory``: ``Server.run`` builds its HTTP
    factory from the name ``HTTPFactory`` in ``daphne.server``."""
    import daphne.server

    daphne.server.HTTPFactory = HttpToolsFactory  # type: ignore[misc]
