"""Run one node, the composition root: an ASGI server serving the Django site on the node's port,
the Paxos runtime and the dashboard feed, in one process and one event loop (the runtime is a task
on the server's loop).

Two servers can carry a node, chosen with ``runpaxos --server``:

* ``daphne`` (the default): channels' reference server, Twisted on asyncio, with HTTP parsed by
  httptools (``daphne_http``) instead of Twisted's ``twisted.web.http``; websockets are
  daphne's own (autobahn). Daphne has no ASGI lifespan, so the runtime starts from daphne's
  ``ready_callable`` and stops from a Twisted "before shutdown" trigger, which daphne's own
  SIGTERM/SIGINT handling fires.
* ``uvicorn`` (with httptools for HTTP, websockets' sans-I/O protocol for websockets): the same
  application without Twisted. Against daphne with Twisted's own HTTP it cut a REST request's
  cost a lot (a hello-world ASGI app answered in ~0.4 ms p50 against ~1.0 ms on the reference
  machine); with httptools under daphne too, REST on uvicorn is about 1.1× daphne's rate (the
  README's benchmarks). It runs on the loop ``asyncio.run`` creates, so the uvloop policy
  ``manage.py`` sets still applies. The runtime starts once uvicorn listens and stops before
  uvicorn shuts its connections down, exactly as under daphne.

Both paths share everything but the server itself: the node is built once (``_build_node``) and
``_Lifecycle`` starts and stops it. A failure of ``node.start()`` stops the process (SIGTERM to
itself) and is raised again from ``serve``. A port the server cannot listen on (in use, a host
that is not this machine's) is a ``ListenError`` from ``serve``, so ``runpaxos`` exits non-zero
with one line naming the address, under either server.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import CommandError

from consensus.config import ClusterConfig
from consensus.runtime import install_node
from consensus.runtime.node import PaxosNode
from consensus.runtime.observer import NodeObserver
from consensus.statemachine import StateMachine
from consensus.storage.failures import is_storage_failure
from consensus.transport.closecodes import close_reason

if TYPE_CHECKING:
    from consensus.dashboard.monitoring import Monitoring

logger = logging.getLogger("consensus.runtime")

SERVERS = ("daphne", "uvicorn")
DEFAULT_SERVER = "daphne"


class StorageFailure(Exception):
    """The node stopped after its database failed; the message is one line for users."""

    def __init__(self, node_id: int, error: BaseException) -> None:
        reason = " ".join(str(error).split()) or type(error).__name__
        super().__init__(
            f"node {node_id} stopped after a storage failure ({reason[:300]}); it exits with "
            "status 1 so that a supervisor (systemd, Kubernetes) restarts it, which recovers "
            "from what was committed; if it fails again, fix the cause (see the log above)"
        )


class ListenError(Exception):
    """The server could not listen on the node's address; the message is one line for users."""

    def __init__(self, node_id: int, address: str, error: BaseException) -> None:
        super().__init__(f"node {node_id} could not listen on {address}: {listen_reason(error)}")


def listen_reason(error: BaseException) -> str:
    """Why a bind failed, in words (``address already in use``), from the ``OSError`` itself or
    the one Twisted's ``CannotListenError`` wraps."""
    cause = getattr(error, "socketError", None) or error
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host ({str(cause.strerror or cause).lower()})"
    if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
        return os.strerror(cause.errno).lower()
    return str(cause)


def serve(
    config: ClusterConfig,
    machines: dict[int, StateMachine],
    *,
    tick_ms: int,
    request_timeout: float,
    max_frame_size: int,
    server: str = DEFAULT_SERVER,
) -> None:
    """Block until SIGTERM/SIGINT; then stop the runtime cleanly and return."""
    if server not in SERVERS:
        raise ValueError(f"unknown server {server!r}: one of {', '.join(SERVERS)}")
    from consensus.dashboard.monitoring import Monitoring  # metrics + live dashboard feed
    from paxos_site.asgi import application

    monitoring = Monitoring()
    node = _build_node(
        config,
        machines,
        tick_ms=tick_ms,
        request_timeout=request_timeout,
        max_frame_size=max_frame_size,
        observer=monitoring.observer,
    )
    lifecycle = _Lifecycle(node, monitoring, config.me.host, config.me.port)
    listen_failure: BaseException | None = None
    install_node(node)
    tune_garbage_collector()
    yield_cpu_on_wakeup()
    try:
        if server == "uvicorn":
            listen_failure = _run_uvicorn(lifecycle, application, max_frame_size)
        else:
            listen_failure = _run_daphne(lifecycle, application, max_frame_size)
    finally:
        install_node(None)
    if listen_failure is not None:
        raise ListenError(node.node_id, config.me.address, listen_failure)
    lifecycle.raise_start_failure()
    if node.failure is not None:
        raise StorageFailure(node.node_id, node.failure)
    log_stopped_at_exit(node.node_id, lifecycle.stop_began)


def log_stopped_at_exit(node_id: int, stop_began: float | None) -> None:
    """Log ``node N stopped`` as the process's last line: when it is about to exit.

    The line used to come as soon as the server returned, ~30 ms after SIGTERM, while the
    process could live on for a while: Python waits for the threads still running (a sync view
    still answering a request, say) before it exits, and this thread's database connection was
    closed only then, by the interpreter's teardown (SQLite's last close copies the WAL into the
    database file). ``atexit`` handlers run after that wait; the handler closes this thread's
    connections first. The line gives the time since the stop began, and how long the process
    waited for its threads, when that was long enough to notice."""
    from django.db import connections

    served_until = time.monotonic()

    def stopped() -> None:
        with contextlib.suppress(Exception):
            connections.close_all()
        now = time.monotonic()
        began = stop_began if stop_began is not None else served_until
        waited = now - served_until
        logger.info(
            "node %s stopped (%.0f ms after it began stopping%s)",
            node_id,
            (now - began) * 1000,
            f"; it waited {waited * 1000:.0f} ms for threads and its database"
            if waited >= EXIT_WAIT_REPORTED
            else "",
        )

    atexit.register(stopped)


EXIT_WAIT_REPORTED = 0.1
"""Seconds of waiting at exit (threads, the database) that ``node N stopped`` mentions."""


def yield_cpu_on_wakeup() -> None:
    """Run the node's threads under Linux's ``SCHED_BATCH`` policy: a thread that wakes up waits
    for a free CPU instead of preempting the thread that runs there.

    A node's threads hand work to each other while holding the GIL: the event loop wakes the
    storage writer (a turn's transaction) and the read thread, and they wake the loop when done.
    When the CPUs are busy, the kernel used to switch to the woken thread at once; that thread
    could not run without the GIL, and the thread holding it waited for a CPU again. py-spy put
    about a tenth of a node's GIL time on the one line that wakes the writer (4 groups, 128
    clients over the client stream), where a bare wake-up costs 7 µs on this machine. Under
    ``SCHED_BATCH`` a woken thread still runs at once on an idle CPU and keeps its fair share
    of CPU time (it is not ``SCHED_IDLE``); only the preemption on wake-up goes. Threads started
    later inherit the policy. Interleaved A/B runs are in docs/performance.md ("What the numbers
    say").
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not permitted: the default policy
        logger.info("the node keeps the default CPU scheduling policy (no SCHED_BATCH here)")


def tune_garbage_collector() -> None:
    """Collect the young generation every 50,000 allocations instead of 700 (the middle one
    every 20 of those, the old one every 10 of those), and move what start-up made (Django, the
    URL conf, the app registry) out of the collector's sight.

    Every command allocates a few short-lived objects per node (futures, messages, outcomes),
    and a node holds many long-lived ones (the log tail, the recent request ids), so with the
    default thresholds the collector runs hundreds of times per second, often over the older
    generations too. ``paxosbench --path client`` at 128 clients: about 20% more commands/s
    (3 interleaved pairs of runs). Cycles are still collected, in bigger batches; RSS after a
    million commands is in the README."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def _build_node(
    config: ClusterConfig,
    machines: dict[int, StateMachine],
    *,
    tick_ms: int,
    request_timeout: float,
    max_frame_size: int,
    observer: NodeObserver,
) -> PaxosNode:
    return PaxosNode(
        config,
        machines,
        tick_ms=tick_ms,
        request_timeout=request_timeout,
        max_frame_size=max_frame_size,
        observer=observer,
        result_ttl=_positive_or_none(getattr(settings, "PAXOS_REQUEST_RESULT_TTL", None)),
        result_max=_positive_or_none(getattr(settings, "PAXOS_REQUEST_RESULT_MAX", None)),
        prune_interval=float(getattr(settings, "PAXOS_PRUNE_INTERVAL", 60.0)),
        read_mode=getattr(settings, "PAXOS_READ_MODE", "index"),
        hand_over_timeout=hand_over_timeout(),
        digest_window=max(0, int(getattr(settings, "PAXOS_DIGEST_WINDOW", 1000))),
        state_check_interval=float(getattr(settings, "PAXOS_STATE_CHECK_INTERVAL", 300.0)),
    )


def hand_over_timeout() -> float:
    """Seconds a stopping node waits, at most, for the groups it leads to get a new leader
    (``PaxosNode._hand_over_leadership``): ``PAXOS_HAND_OVER_TIMEOUT`` (a setting, or the
    environment variable of that name), default ``HAND_OVER_TIMEOUT`` (0.5); 0 turns the
    hand-over off (the other nodes then wait for their election timeout)."""
    from consensus.runtime.node import HAND_OVER_TIMEOUT

    value = getattr(settings, "PAXOS_HAND_OVER_TIMEOUT", None)
    if value is None:
        value = os.environ.get("PAXOS_HAND_OVER_TIMEOUT", "").strip() or HAND_OVER_TIMEOUT
    try:
        return max(0.0, float(value))
    except ValueError:
        logger.warning(
            "PAXOS_HAND_OVER_TIMEOUT=%r is not a number of seconds: using %g",
            value,
            HAND_OVER_TIMEOUT,
        )
        return HAND_OVER_TIMEOUT


class _Lifecycle:
    """The runtime around a server: ``on_listening`` once the server accepts connections (on its
    running loop), ``stop`` before the server shuts down."""

    def __init__(self, node: PaxosNode, monitoring: Monitoring, host: str, port: int) -> None:
        self.node = node
        self.monitoring = monitoring
        self.host = host
        self.port = port
        self.starting: asyncio.Future[None] | None = None
        self.stop_began: float | None = None
        """``time.monotonic()`` when ``stop`` began (SIGTERM, Ctrl-C)."""

    def on_listening(self) -> None:
        self.starting = asyncio.ensure_future(_start(self.node, self.host, self.port))
        self.monitoring.start(self.node)
        self.node.on_failure = self._stop_after_failure

    def _stop_after_failure(self, error: Exception) -> None:
        """Stop the server as SIGTERM does (both servers handle it), on the loop's next turn;
        ``serve`` then raises ``StorageFailure``."""
        if self.node.stopping:  # a SIGTERM of its own is stopping it already
            return
        logger.error("node %s: stopping the process after the storage failure", self.node.node_id)
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)

    async def stop(self) -> None:
        """Stop the dashboard feed and the runtime, which first hands over the groups this node
        leads (``PaxosNode.stop``); ``serve`` logs ``node N stopped`` at the process's exit."""
        self.stop_began = time.monotonic()
        logger.info("node %s stopping", self.node.node_id)
        self.monitoring.stop()
        await self.node.stop()

    def raise_start_failure(self) -> None:
        """Raise what stopped the node's start, if anything did: a database failure (the server
        went away while the node replayed its log, say) as ``StorageFailure``, whose one line
        ``runpaxos`` prints (the traceback is in the log already, from ``_start``), as after a
        failure once started; anything else as it is."""
        future = self.starting
        if future is not None and future.done() and not future.cancelled():
            error = future.exception()
            if error is not None and is_storage_failure(error):
                raise StorageFailure(self.node.node_id, error) from error
            if error is not None:
                raise error


async def _start(node: PaxosNode, host: str, port: int) -> None:
    try:
        await node.start()
    except CommandError:  # a refusal whose message says it all: runpaxos prints it, no traceback
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    except Exception:
        logger.exception("node %s failed to start", node.node_id)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    logger.info(
        "node %s listening on http://%s:%s/ (event loop: %s)",
        node.node_id,
        host,
        port,
        type(asyncio.get_running_loop()).__module__,
    )


# --- daphne ----------------------------------------------------------------------------------


def _run_daphne(
    lifecycle: _Lifecycle, application: Any, max_frame_size: int
) -> BaseException | None:
    """Serve until stopped; return why daphne could not listen, if it could not."""
    from daphne.endpoints import build_endpoint_description_strings

    from consensus.transport.hub import daphne_options

    from . import daphne_http, daphne_tuning
    from .daphne_server import ReapingServer  # installs Twisted's asyncio reactor: import it late

    logger.debug("daphne: per-event overheads trimmed: %s", ", ".join(daphne_tuning.trim()))
    daphne_http.install()  # before Server.run() builds its HTTP factory
    _send_close_reasons_under_daphne()  # and its websocket factory

    from twisted.internet.defer import Deferred

    stopping: asyncio.Future[None] | None = None

    def before_shutdown() -> Any:
        """Stop the runtime (once, whoever asks first); a Deferred of that."""
        nonlocal stopping
        if stopping is None:
            stopping = asyncio.ensure_future(lifecycle.stop())
        return Deferred.fromFuture(asyncio.shield(stopping))

    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined]

    server = ReapingServer(
        application=application,
        endpoints=build_endpoint_description_strings(host=lifecycle.host, port=lifecycle.port),
        signal_handlers=True,
        ready_callable=lifecycle.on_listening,
        action_logger=None,  # no access log: the node's request metrics and logs cover requests
        **daphne_options(max_frame_size),  # type: ignore[arg-type]
    )
    kill_all_applications = server.kill_all_applications

    def kill_applications_once_stopped() -> Any:
        """daphne's own "before shutdown" trigger (``run()`` registers it), after the runtime
        stopped: it cancels every application still running, the consumers of the peer links
        too. Both used to run at once, so a stopping node handing its groups over never heard
        the new leaders (its peers' links to it were gone), and requests in progress were cut
        off instead of being answered (a write waiting for the hand-over, say)."""
        waiting = before_shutdown()
        waiting.addBoth(lambda _result: kill_all_applications())
        return waiting

    server.kill_all_applications = kill_applications_once_stopped  # type: ignore[method-assign]
    server.run()
    return server.listen_failure


def _send_close_reasons_under_daphne() -> None:
    """Make daphne put the ``reason`` of an ASGI ``websocket.close`` in the close frame.

    Written against daphne 4.2.3, whose ``WebSocketProtocol.handle_reply`` passes the code
    alone to ``serverClose`` and drops the reason (the ASGI spec's close event has an optional
    ``reason``, which uvicorn sends). A client refused by a node (a wrong API token on the
    client stream, a peer link that failed its handshake) then saw a bare 4001, and had to
    find the node's log to learn why (django/daphne#374, open). The override only handles a
    close with a reason after the accept; anything else is daphne's own (a close before the
    accept is still its HTTP 403, with no frame to carry a reason). Installed as
    ``daphne_http.install`` installs its HTTP factory: under the name ``Server.run`` builds
    the websocket factory from."""
    import daphne.server
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

    class ReasonedWebSocketProtocol(WebSocketProtocol):
        def handle_reply(self, message: dict[str, Any]) -> None:
            reason = message.get("reason")
            if (
                message.get("type") == "websocket.close"
                and reason
                and self.state != self.STATE_CONNECTING
            ):
                code = message.get("code")
                # autobahn cuts the reason to 123 bytes itself; cut it here alike for both servers
                self.sendClose(code=1000 if code is None else code, reason=close_reason(reason))
                return
            super().handle_reply(message)

    class ReasonedWebSocketFactory(WebSocketFactory):
        protocol = ReasonedWebSocketProtocol

    daphne.server.WebSocketFactory = ReasonedWebSocketFactory  # type: ignore[misc]


# --- uvicorn ---------------------------------------------------------------------------------


def _run_uvicorn(
    lifecycle: _Lifecycle, application: Any, max_frame_size: int
) -> BaseException | None:
    """Serve until stopped; return why uvicorn could not listen, if it could not."""
    server = _uvicorn_server(lifecycle, application, max_frame_size)
    asyncio.run(server.serve())
    return server.listen_failure


def _uvicorn_server(lifecycle: _Lifecycle, application: Any, max_frame_size: int) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """``uvicorn.Server`` with the runtime hooked in, and signals that stop it cleanly."""

        listen_failure: BaseException | None = None

        async def startup(self, sockets: Any = None) -> None:
            try:
                await super().startup(sockets)
            except SystemExit as stop:
                # uvicorn logs a port it cannot bind and calls sys.exit(3) while handling the
                # OSError: keep that error for serve() to report, and stop serving.
                if not isinstance(stop.__context__, OSError):
                    raise
                self.listen_failure = stop.__context__
                self.should_exit = True
                return
            if self.started:
                lifecycle.on_listening()

        async def shutdown(self, sockets: Any = None) -> None:
            try:
                await lifecycle.stop()  # before the connections go, as daphne's trigger does
            finally:
                await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """Uvicorn's own handlers re-raise the signal once ``serve()`` is done, which kills
            the process (SIGTERM) or raises KeyboardInterrupt (SIGINT) before ``serve`` here can
            return. These only ask the server to exit (a second Ctrl-C forces it), so the node
            exits with status 0 after a clean stop, as under daphne."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            loop = asyncio.get_running_loop()
            handled = (signal.SIGINT, signal.SIGTERM)
            for signum in handled:
                loop.add_signal_handler(signum, self.handle_exit, signum, None)
            try:
                yield
            finally:
                for signum in handled:
                    loop.remove_signal_handler(signum)

    return Server(_uvicorn_config(application, lifecycle.host, lifecycle.port, max_frame_size))


def _uvicorn_config(application: Any, host: str, port: int, max_frame_size: int) -> Any:
    """Uvicorn's settings, with the limits and behaviour daphne has (see hub.daphne_options)."""
    import uvicorn

    return uvicorn.Config(
        application,
        host=host,
        port=port,
        loop="none",  # asyncio.run() makes the loop: the policy manage.py set (uvloop) applies
        http=_limited_http_protocol(),  # httptools, with daphne_http's head limit
        # websockets' sans-I/O protocol: uvicorn 0.54 deprecates its legacy "websockets" one (a
        # UserWarning at every start) and will point "websockets" here in a future release.
        ws=_limited_websocket_protocol(),
        ws_max_size=max_frame_size,  # as websocket_max_message_size for daphne
        ws_ping_interval=20.0,  # daphne's keepalive defaults (peer links ping every 5 s anyway)
        ws_ping_timeout=30.0,
        ws_per_message_deflate=False,  # daphne (autobahn) accepts no compression either
        lifespan="off",  # the runtime starts and stops around the server, as under daphne
        interface="asgi3",
        proxy_headers=False,  # daphne trusts no X-Forwarded-* headers unless told to
        timeout_keep_alive=60,  # as daphne (daphne_http.IDLE_TIMEOUT); 5 s races client pools
        timeout_graceful_shutdown=5,  # then cancel what is left (daphne kills it at once)
        log_config=None,  # keep Django's LOGGING; uvicorn's loggers propagate to the root
        log_level="warning",
        access_log=False,
    )


def _limited_http_protocol() -> type:
    """uvicorn's httptools protocol with ``daphne_http.MAX_HEAD_BYTES``: a request line and
    headers above it get ``431`` and the connection is closed, as under daphne. uvicorn has no
    limit of its own (llhttp has none): a head of 100 headers of 1 MiB each was read whole,
    answered, and left the node's RSS 200 MB larger.

    The limit counts the raw bytes read while a head is incomplete, before the parser sees them:
    httptools keeps a header's name and value until the header ends (its ``on_header`` comes
    only then, with the whole header), so a count in the parser's callbacks let one header of
    20 MiB be copied piece by piece into a growing buffer (~3 s of CPU) before any check ran,
    and a header that never ended grew without limit. Now the parser sees at most
    ``MAX_HEAD_BYTES`` of a head: a read that would take the head past it is parsed up to the
    limit, and if the head has not ended there the answer is ``431``. Once the headers are
    complete nothing is counted: a body costs nothing per read.

    A head that begins in the same read as the end of the request before it (pipelining) had
    its first bytes parsed uncounted (where in the read it began is not known); its URL and
    headers are measured once they are complete instead. The parser saw at most one read (the
    event loop reads up to 256 KiB at once) of it beyond the limit."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    from .daphne_http import HEAD_TOO_LARGE, MAX_HEAD_BYTES, HeadTooLarge

    status, _title, text = HEAD_TOO_LARGE
    message = text.encode("ascii")
    framing = [
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(message),
        b"connection: close\r\n",
        b"\r\n",
        message,
    ]

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        lingering = False
        """Answered, with the connection to close, before the request's body was read: only
        the sending side is closed, and what else comes is read and dropped (``linger``)."""
        head_room: int | None = MAX_HEAD_BYTES
        """The bytes the head being read (or the next one) may still take; ``None`` once its
        headers are complete, until its message ends."""
        message_ended = False
        """A message ended in the read being parsed: a head that begins after it in that read
        begins with bytes that were not counted."""
        head_uncounted = False
        """The head being read began after a message in the same read (``message_ended``)."""
        head_too_large = False

        def data_received(self, data: bytes) -> None:
            if self.lingering:
                return  # the rest of a refused body
            room = self.head_room
            if room is None:  # a body: its bytes do not count
                super().data_received(data)
                return
            self.message_ended = False
            room -= len(data)
            if room >= 0:
                self.head_room = room
                super().data_received(data)
                return
            self._receive_past_limit(memoryview(data), room + len(data))

        def _receive_past_limit(self, data: memoryview, room: int) -> None:
            """A read with more bytes than the head may still take: the parser gets the ones
            it may take, and the rest (a body, the next requests) only once the head ended
            within them; else the answer is ``431`` and nothing more is read."""
            self.head_room = 0
            super().data_received(data[:room])  # type: ignore[arg-type]
            if self.transport.is_closing() or self.parser.should_upgrade():
                return  # answered (a bad request), or an upgrade: uvicorn drops the rest too
            if self.head_room == 0:  # not reset by on_headers_complete / on_message_complete
                self.head_too_large = True
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)  # as uvicorn does for any head it refuses
                self.send_400_response(msg)
                return
            self.data_received(data[room:])  # type: ignore[arg-type]

        def on_message_begin(self) -> None:
            self.head_uncounted = self.message_ended
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self.head_room = None
            if self.head_uncounted and self._measured_head() > MAX_HEAD_BYTES:
                self.head_too_large = True
                raise HeadTooLarge  # httptools raises HttpParserCallbackError from it
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and not isinstance(cycle.transport, _LingeringClose):
                cycle.transport = _LingeringClose(self, cycle)

        def linger(self) -> None:
            """Close as daphne_http's channel does after an answer sent before the request's
            body was read (the API's 413 to a client that said ``Connection: close``): the
            answer, then a half-close; the rest of the body is dropped until the client closes
            (asyncio closes the transport at its end of file), or a quarter of the keep-alive
            timeout, when it is aborted as daphne_http aborts a close that did not complete (a
            ``close`` would wait for ever on a client that reads nothing). Closed at once, the
            kernel reset a connection with unread bytes, and the client met a reset that took
            the answer with it."""
            self.lingering = True
            self.transport.write_eof()
            self.flow.resume_reading()
            self.loop.call_later(self.timeout_keep_alive / 4, self.transport.abort)

        def _measured_head(self) -> int:
            """The bytes of the URL, header names and values of the head just parsed."""
            return len(self.url) + sum(len(name) + len(value) for name, value in self.headers)

        def on_chunk_header(self) -> None:
            # A chunk's size line, or the trailers after the last chunk: httptools keeps a
            # trailer until it ends, as it does a header, so their raw bytes count too.
            self.head_room = MAX_HEAD_BYTES

        def on_body(self, body: bytes) -> None:
            self.head_room = None  # a chunk's data: not counted
            super().on_body(body)

        def on_message_complete(self) -> None:
            self.head_room = MAX_HEAD_BYTES
            self.message_ended = True
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to a request the parser refused: ``431`` for a head above the
            limit (uvicorn logged its "Invalid HTTP request received." warning already)."""
            if not self.head_too_large:
                super().send_400_response(msg)
                return
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content += [name, b": ", value, b"\r\n"]
            self.transport.write(b"".join(content + framing))
            self.transport.close()

    return LimitedHttpToolsProtocol


class _LingeringClose:
    """The transport as one request's uvicorn cycle sees it: the cycle's close at the end of an
    answer sent while the request's body is still coming lingers (``linger``) instead."""

    def __init__(self, protocol: Any, cycle: Any) -> None:
        self._protocol, self._cycle, self._transport = protocol, cycle, protocol.transport

    def close(self) -> None:
        transport = self._transport
        if self._cycle.more_body and not transport.is_closing() and transport.can_write_eof():
            self._protocol.linger()
        else:
            transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _limited_websocket_protocol() -> type:
    """uvicorn's websockets-sansio protocol with ``consensus.transport.ws_limits``: each
    connection starts with the small frame limit (its parser reads ``max_size`` at every frame);
    the unsent bytes are the asyncio transport's write buffer."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from consensus.transport import ws_limits

    class LimitedWebSocketProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Before any byte is parsed: the upgrade request and a frame header can come in one
            # read, and the frame is checked before handle_connect runs.
            self._full_max_size = self.conn.max_size
            self.conn.max_size = ws_limits.UNPROVEN_FRAME_LIMIT

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            if self.response.status_code != 101:
                return
            conn, full = self.conn, self._full_max_size

            def allow_full() -> None:
                conn.max_size = full

            transport = self.transport
            ws_limits.offer(self.scope, allow_full, transport.get_write_buffer_size)  # type: ignore[arg-type]

        async def send(self, message: Any) -> None:
            """uvicorn sends the close reason as given: one above 123 bytes made websockets
            raise ("control frame too long") where the application closed the connection."""
            if message.get("type") == "websocket.close" and message.get("reason"):
                message = {**message, "reason": close_reason(message["reason"])}
            await super().send(message)

    return LimitedWebSocketProtocol


def _positive_or_none(value: object) -> float | None:
    """Settings use -1 (or None) for "no bound"."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if number >= 0 else None
