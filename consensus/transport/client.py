"""Outbound peer links: this node -> one peer, over the ``websockets`` asyncio client.

Theory of operation
-------------------
Each pair of nodes is joined by two websocket connections, one each way. A node *sends* only on
the links it opened (``PeerLink``, here) and *receives* only on the links its peers opened
(``consumers.PeerConsumer``). This costs a second TCP connection per pair, and buys simplicity:
each connection has one writer and one reader, there is no "who dials whom" tie-break, no
sharing of a connection between daphne's consumer and this client, and a link that breaks is
re-dialled by the one side that needs it to send.

A ``PeerLink`` owns a bounded outbound queue. ``enqueue`` is synchronous and never waits: when
the queue is full the oldest message is dropped and counted (Paxos tolerates loss; the core
retries whatever still matters, and stale heartbeats are the first to go). The sender task:

1. connects to ``ws://host:port/ws/peer/`` and runs the client side of the handshake (auth.py)
   within ``handshake_timeout``;
2. then loops: wait until the queue is non-empty, take *everything* in it, encode it into as few
   frames as the size limits allow, send. While one ``send`` waits for the socket to drain, new
   messages pile up and leave together in the next frame, so batching grows with load by itself;
3. on any failure (refused, timeout, auth, closed) backs off exponentially with jitter
   (``backoff_min`` .. ``backoff_max``) and reconnects; messages queued meanwhile are kept,
   up to the queue bound.

A dial to a local port nobody listens on yet can connect to *itself*: when that port is in the
ephemeral range, Linux may pick it as the source port, and TCP's simultaneous open joins the
socket to itself. Such a connection would hold the port the peer is about to listen on (its
start fails with "Address already in use"), so it is closed as soon as it is made and counts
as a refused attempt (``SelfConnectionError``).

``stop()`` cancels the task; the websocket is closed on the way out (bounded by close_timeout).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from consensus.core.messages import Message

from .auth import (
    HANDSHAKE_TIMEOUT,
    MAX_HANDSHAKE_FRAME,
    AuthError,
    ClientHandshake,
    unchecked,
)
from .closecodes import CloseCode, describe
from .codec import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGES_PER_FRAME, encode_frames
from .peers import PeerAddress, PeerStats

__all__ = ["LinkOptions", "PeerLink", "SelfConnectionError", "is_self_connection"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkOptions:
    queue_size: int = 10_000
    """Outbound messages buffered per peer; beyond it the oldest are dropped."""
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_messages_per_frame: int = DEFAULT_MAX_MESSAGES_PER_FRAME
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    connect_timeout: float = 5.0
    """TCP connect plus the HTTP upgrade."""
    backoff_min: float = 0.05
    backoff_max: float = 2.0
    ping_interval: float | None = 5.0
    """Websocket keepalive: detects a dead TCP connection that no send would notice. Paxos has
    its own heartbeats; this only keeps the 'connected' status honest."""
    ping_timeout: float | None = 10.0
    close_timeout: float = 1.0
    write_limit: int = 256 * 1024
    """Bytes buffered in the socket before ``send`` waits: the batching window under load."""
    send_timeout: float | None = 10.0
    """A send that waits this long for the peer to read ends the connection (then reconnect
    with backoff). The keepalive cannot notice a peer that stopped reading (a stopped process,
    a host gone without a reset) once the socket's buffers are full: its ping waits behind the
    unsent bytes, so its pong timer never starts, and the link looked connected for good."""
    inbound_bytes: int | None = None
    """Bytes of one peer's frames that may wait for the receiver to take them
    (``PeerTransport.inbound_taken``); its further frames are dropped until it does, as the
    outbound queue drops its oldest (``hub.PeerTransport.deliver``). None: no bound, for a
    receiver that handles every frame at once."""

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.max_frame_size < 64 or self.max_messages_per_frame < 1:
            raise ValueError("queue_size, max_frame_size and max_messages_per_frame are too small")
        if not 0 < self.backoff_min <= self.backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        if self.inbound_bytes is not None and self.inbound_bytes < 1:
            raise ValueError("inbound_bytes must be at least 1 (None: no bound)")


class LinkClosed(Exception):
    """The connection ended while we were sending (close code in the message)."""


class SelfConnectionError(ConnectionRefusedError):
    """The TCP connection joined the socket to itself: nobody listens on the peer's port."""


def is_self_connection(sockname: Any, peername: Any) -> bool:
    """Whether a connected socket's two ends are one address (TCP's simultaneous open with
    itself). Addresses as ``getsockname``/``getpeername`` give them (None when unknown)."""
    return sockname is not None and sockname == peername


def _reset_on_close(sock: Any) -> None:
    """Make closing ``sock`` send a reset: a plain close of a connection to itself leaves it
    in TIME_WAIT, which keeps the port from being listened on for a minute."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _PeerConnect(connect):
    """websockets' ``connect``, refusing a connection to itself before the HTTP upgrade: its
    own request would come back as the "response", and the port would stay taken meanwhile."""

    async def create_connection(self) -> ClientConnection:
        connection = await super().create_connection()
        transport = connection.transport
        sockname = transport.get_extra_info("sockname")
        if is_self_connection(sockname, transport.get_extra_info("peername")):
            _reset_on_close(transport.get_extra_info("socket"))
            transport.abort()  # frees the port now, before the peer tries to listen on it
            raise SelfConnectionError(f"connected to itself at {sockname}: nothing listens there")
        return connection


class PeerLink:
    """The sending half of the connection from this node to one peer."""

    def __init__(
        self,
        *,
        node_id: int,
        peer: PeerAddress,
        secret: bytes,
        members: Collection[int] | None = None,
        groups: Iterable[tuple[int, str]] | None = None,
        stats: PeerStats | None = None,
        options: LinkOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.peer = peer
        self._secret = secret
        self.members = members
        """This node's cluster members, checked against the peer's in the handshake."""
        self.groups = None if groups is None else tuple(groups)
        """This node's (group id, state machine) pairs, checked against the peer's likewise."""
        self.stats = stats if stats is not None else PeerStats(node_id=peer.node_id)
        self.options = options if options is not None else LinkOptions()
        self._rng = rng if rng is not None else random.Random()
        # deque(maxlen) drops from the left (the oldest) when full: exactly the overflow policy.
        self._queue: collections.deque[Message] = collections.deque(maxlen=self.options.queue_size)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_logged_error: str | None = None
        self._connected_at: float | None = None
        """Loop time the current session authenticated; None until it does."""
        self._sending_since: float | None = None
        """Loop time the send in progress began (None: none is): ``_watch_sends`` reads it."""
        self._send_stuck = False
        """The watchdog aborted the connection: a send waited ``send_timeout``."""
        self._peer_is_back = asyncio.Event()
        """Set by ``peer_is_back``: cuts short the wait before the next reconnect attempt."""

    def __repr__(self) -> str:
        return f"<PeerLink {self.node_id}->{self.peer.node_id} {self.peer.url}>"

    # --- the runtime side: synchronous, never waits ------------------------------------------

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def enqueue(self, messages: Iterable[Message]) -> None:
        """Queue messages for this peer. Must be called on the event loop's thread."""
        queue = self._queue
        limit = self.options.queue_size
        for message in messages:
            if len(queue) == limit:
                self.stats.dropped_overflow += 1
            queue.append(message)
        if queue:
            self._wake.set()

    def peer_is_back(self) -> None:
        """The peer has just connected to this node: it is up, so reconnect now rather than
        after the rest of the backoff (up to ``backoff_max``). A restarted node's questions
        (its catch-up, its audit: core/audit.py) get their answers over this link."""
        if not self.stats.connected_out:
            self._peer_is_back.set()

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the connect/send task on the running loop. Idempotent."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"paxos-link-{self.node_id}-to-{self.peer.node_id}"
        )

    async def stop(self) -> None:
        """Cancel the task and close the connection; returns when both are done."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too: do not swallow that
        finally:
            self.stats.connected_out = False

    # --- the task ----------------------------------------------------------------------------

    def backoff_delay(self, failures: int) -> float:
        """Delay before reconnect attempt ``failures`` (>= 1): exponential, capped, with "equal
        jitter" (half fixed, half random) so a restarted cluster does not reconnect in lockstep."""
        ceiling = min(
            self.options.backoff_max, self.options.backoff_min * 2 ** min(failures - 1, 30)
        )
        return ceiling / 2 + self._rng.random() * ceiling / 2

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._connected_at = None
            self._peer_is_back.clear()  # news from before this attempt is no news
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure of one session leads to a reconnect
                self._record_failure(exc)
            connected_at = self._connected_at
            if connected_at is not None and loop.time() - connected_at >= self.options.backoff_max:
                failures = 0  # it was a healthy connection: retry quickly
            failures += 1
            delay = self.backoff_delay(failures)
            logger.debug(
                "node %d -> peer %d: reconnecting in %.3fs (attempt %d, last session %.3fs)",
                self.node_id,
                self.peer.node_id,
                delay,
                failures,
                loop.time() - started,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._peer_is_back.wait(), delay)

    async def _session(self) -> None:
        options = self.options
        async with _PeerConnect(
            self.peer.url,
            compression=None,
            proxy=None,  # peers talk directly; never through an HTTP(S)_PROXY from the env
            open_timeout=options.connect_timeout,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            max_size=MAX_HANDSHAKE_FRAME,  # the server only ever sends handshake frames
            max_queue=4,
            write_limit=options.write_limit,
            user_agent_header=f"paxos-peer node={self.node_id}",
        ) as websocket:
            handshake = await self._handshake(websocket)
            self._connected_at = asyncio.get_running_loop().time()
            self.stats.connected_out = True
            self.stats.connects += 1
            self.stats.record_groups(handshake.server_groups)
            logger.info(
                "node %d -> peer %d: link up (%s)%s%s",
                self.node_id,
                self.peer.node_id,
                self.peer.url,
                f" after: {self._last_logged_error}" if self._last_logged_error else "",
                unchecked(handshake.server_members, handshake.server_groups),
            )
            self._last_logged_error = None
            reader = asyncio.create_task(self._read_until_closed(websocket))
            self._send_stuck = False
            watchdog = (
                asyncio.create_task(self._watch_sends(websocket))
                if options.send_timeout is not None
                else None
            )
            try:
                await self._send_loop(websocket, reader)
            finally:
                self.stats.connected_out = False
                reader.cancel()
                if watchdog is not None:
                    watchdog.cancel()

    async def _handshake(self, websocket: ClientConnection) -> ClientHandshake:
        handshake = ClientHandshake(
            self._secret,
            node_id=self.node_id,
            server_id=self.peer.node_id,
            members=self.members,
            groups=self.groups,
        )
        async with asyncio.timeout(self.options.handshake_timeout):
            hello = handshake.receive_challenge(await websocket.recv())
            await websocket.send(hello)
            handshake.receive_welcome(await websocket.recv())
        return handshake

    async def _read_until_closed(self, websocket: ClientConnection) -> None:
        """Keep reading so close frames and pings are processed; the server sends no data."""
        try:
            async for _ in websocket:
                logger.warning(
                    "node %d -> peer %d: ignoring an unexpected frame on a send-only link",
                    self.node_id,
                    self.peer.node_id,
                )
        except ConnectionClosed:
            pass
        finally:
            self._wake.set()  # let the sender notice

    async def _watch_sends(self, websocket: ClientConnection) -> None:
        """Abort the connection when one send has waited ``send_timeout`` for the peer to read
        (see ``LinkOptions.send_timeout``). A watchdog that looks four times per timeout rather
        than a timeout around every send: that cost about 5 µs per frame, a timer made and
        cancelled each time, on the path of every message."""
        timeout = self.options.send_timeout
        assert timeout is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(timeout / 4)
            since = self._sending_since
            if since is not None and loop.time() - since >= timeout:
                self._send_stuck = True
                websocket.transport.abort()  # the send waiting raises ConnectionClosed
                return

    def _stuck(self) -> LinkClosed:
        return LinkClosed(
            f"the peer read nothing for {self.options.send_timeout:g} s (a stopped process, or "
            "a network that drops everything?)"
        )

    async def _send_loop(self, websocket: ClientConnection, reader: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        wake = self._wake
        stats = self.stats
        options = self.options
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
            if reader.done():
                if self._send_stuck:
                    raise self._stuck()
                raise LinkClosed(
                    f"connection closed by peer ({describe(websocket.close_code)}"
                    f"{': ' + websocket.close_reason if websocket.close_reason else ''})"
                )
            if not queue:
                continue
            batch = list(queue)
            queue.clear()
            frames, rejected = encode_frames(
                batch, options.max_frame_size, options.max_messages_per_frame
            )
            if rejected:
                stats.dropped_unsendable += len(rejected)
                logger.error(
                    "node %d -> peer %d: dropped %d message(s) that cannot be sent (unencodable "
                    "or larger than max_frame_size=%d), first: %.200r",
                    self.node_id,
                    self.peer.node_id,
                    len(rejected),
                    options.max_frame_size,
                    rejected[0],
                )
            for position, (frame, count) in enumerate(frames):
                self._sending_since = loop.time()  # the watchdog's: see _watch_sends
                try:
                    await websocket.send(frame)
                except ConnectionClosed:
                    stats.dropped_unsendable += sum(c for _, c in frames[position:])
                    if self._send_stuck:
                        raise self._stuck() from None
                    raise
                finally:
                    self._sending_since = None
                stats.frames_sent += 1
                stats.messages_sent += count
                stats.bytes_sent += len(frame)

    def _record_failure(self, exc: Exception) -> None:
        if self._connected_at is None:
            self.stats.connect_failures += 1
        reason = _explain(exc)
        self.stats.record_error(reason)
        unexpected = not isinstance(
            exc, OSError | TimeoutError | WebSocketException | AuthError | LinkClosed
        )
        if unexpected:
            logger.exception(
                "node %d -> peer %d: link failed unexpectedly", self.node_id, self.peer.node_id
            )
        elif reason != self._last_logged_error:
            # Log a problem once when it starts or changes, not on every retry every 2 s.
            logger.warning(
                "node %d -> peer %d (%s): %s; retrying with backoff",
                self.node_id,
                self.peer.node_id,
                self.peer.url,
                reason,
            )
        else:
            logger.debug("node %d -> peer %d: %s", self.node_id, self.peer.node_id, reason)
        self._last_logged_error = reason


def _explain(exc: BaseException) -> str:
    """One line a human can act on."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 403:
            return "peer refused the websocket (HTTP 403): is its Paxos runtime running?"
        return f"peer answered HTTP {status} instead of a websocket"
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is None:  # no close frame came: our keepalive ping timed out, or TCP broke
            return "connection lost (the peer stopped answering, or the network failed)"
        code = exc.rcvd.code
        reason = exc.rcvd.reason
        if code == CloseCode.AUTH_FAILED and not reason:  # older releases on daphne sent none
            reason = (
                "it refused the handshake (another secret or node list, or another state "
                "machine for a group?); its log says why"
            )
        return f"connection closed by peer ({describe(code)}{': ' + reason if reason else ''})"
    if isinstance(exc, LinkClosed):
        return str(exc)
    if isinstance(exc, AuthError):
        return f"authentication failed: {exc}"
    if isinstance(exc, TimeoutError):
        return "timed out connecting or authenticating"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"
