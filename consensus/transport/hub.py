"""``PeerTransport``: the one object through which the runtime and the peer links meet.

The transport must not import the runtime (DESIGN.md §2: imports flow downwards), yet the
consumer, which daphne instantiates per connection, must reach the runtime's inbound queue. So
the runtime builds a ``PeerTransport`` with a callback and ``install()``s it here; consumers
find it with ``get_transport()``. Nothing else is shared.

Runtime's view::

    transport = PeerTransport(node_id=1, nodes=[PeerAddress(1, "10.0.0.1", 33333), ...],
                              secret=config.secret, on_messages=inbound_queue_put,
                              groups=[(1, "kv"), (3, "mycounter")])
    install(transport)
    await transport.start()          # dial every peer, keep redialling
    transport.send(ready.messages)   # never waits; routes by message.dst
    ...
    await transport.stop()
    uninstall(transport)

Inbound flow: a consumer hands each frame to ``on_messages`` as soon as it is decoded, and the
runtime takes what arrived at the start of each turn; while a turn waits for its disk write, the
frames pile up in its inbox. With ``LinkOptions.inbound_bytes`` set, the frames of one peer that
wait for the next turn are bounded: once that many bytes of them wait, its further frames are
dropped and counted (``dropped_inbound``; Paxos resends what still matters) until the runtime
calls ``inbound_taken()``. A link cannot make its sender wait instead: daphne reads every frame
into the connection's queue whatever the consumer does, so a consumer that paused would only move
the pile there. The consumer's queue itself stays short, as it handles each frame without waiting
on the loop that reads them (measured: 5.5 million heartbeat acks in 10 s over a real socket left
the node at 104-105 MB; uvicorn's protocol even stops reading until the consumer took them).

Threads and loops: ``start()`` binds the transport to the running loop. ``send()`` may be called
from any thread (from another thread it hops onto that loop with ``call_soon_threadsafe``).
``on_messages(src, messages)`` is called on the loop that runs the consumers (daphne's), must not
block and must not raise; if the runtime runs its own loop in another thread, the callback itself
must hop (``loop.call_soon_threadsafe(queue.put_nowait, ...)``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from consensus.core.errors import LocalProtocolError
from consensus.core.messages import Message
from consensus.throttle import LogThrottle

from .auth import EARLIER_RELEASES_MAX_FRAME, Groups, as_groups, check_fits, groups_to_send
from .client import LinkOptions, PeerLink
from .closecodes import CloseCode
from .peers import PeerAddress, PeerStats

__all__ = [
    "InboundCallback",
    "PeerTransport",
    "daphne_options",
    "get_transport",
    "install",
    "uninstall",
]

logger = logging.getLogger(__name__)

REPEAT_REPORT_SECONDS = 60.0
"""A refused inbound link's problem is logged at most once in this many seconds (then DEBUG)."""
MAX_REPORTED = 1000
MAX_REPORT_KEY = 300
"""How many recent problems ``first_report`` remembers, and how much of each one's text (anyone
can connect and make up a problem: a bad frame's text)."""

InboundCallback = Callable[[int, list[Message]], None]
"""``on_messages(src_node_id, messages)``: synchronous, non-blocking (a queue put)."""

CloseInbound = Callable[[CloseCode, str], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _InboundLink:
    node_id: int
    loop: asyncio.AbstractEventLoop
    close: CloseInbound


class PeerTransport:
    """This node's peer links: outbound ``PeerLink``s plus bookkeeping of inbound consumers."""

    def __init__(
        self,
        *,
        node_id: int,
        nodes: Iterable[PeerAddress],
        secret: str | bytes,
        on_messages: InboundCallback,
        groups: Iterable[tuple[int, str]] | None = None,
        options: LinkOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``groups``: this node's (group id, state machine name) pairs, compared with each
        peer's in the handshake (None: send none, compare none)."""
        addresses: dict[int, PeerAddress] = {}
        for address in nodes:
            if address.node_id in addresses:
                raise LocalProtocolError(f"node id {address.node_id} is listed twice")
            addresses[address.node_id] = address
        if node_id not in addresses:
            raise LocalProtocolError(f"node {node_id} is not in the cluster {sorted(addresses)}")
        secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not secret_bytes:
            raise LocalProtocolError("the cluster secret must not be empty")
        self.node_id = node_id
        self.members: frozenset[int] = frozenset(addresses)
        """Every node id of the cluster, this one included."""
        try:
            own_groups = None if groups is None else as_groups(groups)
            check_fits(node_id, self.members, None)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.groups = groups_to_send(node_id, self.members, own_groups)
        if own_groups is not None and self.groups is None:
            logger.warning(
                "node %s: %s groups make the peer handshake larger than nodes of earlier releases "
                "accept (%s bytes): this node does not compare the groups' state machines with "
                "its peers; every node must still run the same state machine for a group",
                node_id,
                len(own_groups),
                EARLIER_RELEASES_MAX_FRAME,
            )
        """(group id, state machine name) of every group of this node's config; None: unchecked."""
        self.peers: dict[int, PeerAddress] = {
            peer_id: address for peer_id, address in addresses.items() if peer_id != node_id
        }
        self.secret = secret_bytes
        self.options = options if options is not None else LinkOptions()
        self._on_messages = on_messages
        self._stats = {peer_id: PeerStats(node_id=peer_id) for peer_id in self.peers}
        rng = rng if rng is not None else random.Random()
        self._links = {
            peer_id: PeerLink(
                node_id=node_id,
                peer=address,
                secret=secret_bytes,
                members=self.members,
                groups=self.groups,
                stats=self._stats[peer_id],
                options=self.options,
                rng=random.Random(rng.random()),
            )
            for peer_id, address in self.peers.items()
        }
        self._inbound: set[_InboundLink] = set()
        self._reports = LogThrottle(REPEAT_REPORT_SECONDS, MAX_REPORTED)
        self._waiting: dict[int, int] = {}
        """Peer -> bytes of its frames delivered since the runtime last took its inbox."""
        self._overflows = LogThrottle(REPEAT_REPORT_SECONDS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stopped = False
        self.unroutable = 0
        """Outbound messages dropped because their dst is not a peer (or is this node)."""

    def __repr__(self) -> str:
        return f"<PeerTransport node={self.node_id} peers={sorted(self.peers)}>"

    # --- configuration the consumer reads ----------------------------------------------------

    @property
    def max_frame_size(self) -> int:
        return self.options.max_frame_size

    @property
    def max_messages_per_frame(self) -> int:
        return self.options.max_messages_per_frame

    @property
    def handshake_timeout(self) -> float:
        return self.options.handshake_timeout

    @property
    def accepting(self) -> bool:
        """False once stop() began: new inbound links are refused."""
        return not self._stopped

    # --- runtime -> peers --------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        """Queue each message on the link to ``message.dst``. Never waits, never raises for a
        peer being down: a full queue drops its oldest message (counted in the peer's stats)."""
        if self._stopped:
            return
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._route, list(messages))
            return
        self._route(messages)

    def _route(self, messages: Iterable[Message]) -> None:
        by_dst: dict[int, list[Message]] = {}
        for message in messages:
            bucket = by_dst.get(message.dst)
            if bucket is None:
                bucket = by_dst[message.dst] = []
            bucket.append(message)
        links = self._links
        for dst, bucket in by_dst.items():
            link = links.get(dst)
            if link is not None:
                link.enqueue(bucket)
            else:
                self.unroutable += len(bucket)
                logger.warning(
                    "node %d: dropping %d message(s) for node %d, which is %s, first: %.200r",
                    self.node_id,
                    len(bucket),
                    dst,
                    "this node" if dst == self.node_id else "not a cluster member",
                    bucket[0],
                )

    # --- peers -> runtime (called by consumers) ----------------------------------------------

    def deliver(self, src: int, messages: list[Message], frame_bytes: int = 0) -> None:
        """Hand one validated frame's messages to the runtime, or drop them when the peer's
        frames waiting for the runtime reached ``options.inbound_bytes``. Never raises."""
        stats = self._stats.get(src)
        if stats is not None:
            stats.frames_received += 1
            stats.messages_received += len(messages)
            stats.bytes_received += frame_bytes
        if self._stopped:
            return
        limit = self.options.inbound_bytes
        if limit is not None:
            waiting = self._waiting.get(src, 0)
            if waiting >= limit:  # at least one frame always gets through, whatever its size
                self._overflow(src, len(messages), waiting)
                return
            self._waiting[src] = waiting + frame_bytes
        try:
            self._on_messages(src, messages)
        except Exception:
            logger.exception(
                "node %d: the inbound callback failed on %d message(s) from node %d",
                self.node_id,
                len(messages),
                src,
            )

    def inbound_taken(self) -> None:
        """The runtime took every message delivered so far (a turn begins): no frame waits."""
        self._waiting.clear()

    def _overflow(self, src: int, count: int, waiting: int) -> None:
        reason = (
            f"dropped a frame of {count} message(s) from node {src}: {waiting} bytes of its "
            f"frames wait for this node's next turn (limit {self.options.inbound_bytes})"
        )
        self.record_inbound_drop(src, count, reason)
        if self._overflows.first(src):
            logger.warning(
                "node %d: %s; the next turn waits for the disk, or the peer sends too much. "
                "Paxos resends what still matters (said once a minute; paxos_peer_dropped_"
                'messages{reason="inbound"} counts them)',
                self.node_id,
                reason,
            )

    def record_inbound_drop(self, src: int, count: int, reason: str) -> None:
        stats = self._stats.get(src)
        if stats is not None:
            stats.dropped_inbound += count
            stats.record_error(reason)

    def first_report(self, problem: str, now: float | None = None) -> bool:
        """Whether to log ``problem`` (a refused inbound link's, with the remote host) now: at
        most once every ``REPEAT_REPORT_SECONDS`` (``LogThrottle``)."""
        return self._reports.first(problem[:MAX_REPORT_KEY], now)

    def inbound_opened(
        self, node_id: int, close: CloseInbound, groups: Groups | None = None
    ) -> object:
        """A consumer authenticated ``node_id`` (whose handshake listed ``groups``). Returns a
        token for ``inbound_closed``; ``close(code, reason)`` lets ``stop()`` shut the consumer's
        connection."""
        link = _InboundLink(node_id=node_id, loop=asyncio.get_running_loop(), close=close)
        self._inbound.add(link)
        outbound = self._links.get(node_id)
        if outbound is not None:
            outbound.peer_is_back()
        self._stats[node_id].connected_in += 1
        self._stats[node_id].record_groups(groups)
        return link

    def inbound_closed(self, token: object, error: str | None = None) -> None:
        if not isinstance(token, _InboundLink) or token not in self._inbound:
            return
        self._inbound.discard(token)
        stats = self._stats[token.node_id]
        stats.connected_in = max(0, stats.connected_in - 1)
        if error:
            stats.record_error(error)

    def record_error(self, node_id: int, error: str) -> None:
        stats = self._stats.get(node_id)
        if stats is not None:
            stats.record_error(error)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and start dialling every peer."""
        if self._stopped:
            raise LocalProtocolError("a stopped PeerTransport cannot be restarted")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for link in self._links.values():
            link.start()
        logger.info(
            "node %d: peer transport started, dialling %s",
            self.node_id,
            ", ".join(f"{peer_id}={address.url}" for peer_id, address in self.peers.items())
            or "nobody (single-node cluster)",
        )

    async def stop(self) -> None:
        """Stop sending, close outbound links and the inbound links consumers hold open."""
        if self._stopped:
            return
        self._stopped = True
        await asyncio.gather(*(link.stop() for link in self._links.values()))
        current = asyncio.get_running_loop()
        closers = []
        for inbound in list(self._inbound):
            coroutine = inbound.close(CloseCode.SHUTTING_DOWN, "node is stopping")
            if inbound.loop is current:
                closers.append(coroutine)
            else:
                future = asyncio.run_coroutine_threadsafe(coroutine, inbound.loop)
                closers.append(asyncio.wrap_future(future))
        if closers:
            results = await asyncio.gather(*closers, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    logger.warning("node %d: closing an inbound link: %r", self.node_id, result)
        logger.info("node %d: peer transport stopped", self.node_id)

    # --- status ------------------------------------------------------------------------------

    def peer_stats(self, node_id: int) -> PeerStats:
        stats = self._stats[node_id]
        stats.queue_length = self._links[node_id].queue_length
        return stats

    def status(self) -> dict[str, object]:
        """JSON-ready status for /api/status/ and the dashboard."""
        return {
            "node_id": self.node_id,
            "running": self._loop is not None and not self._stopped,
            "unroutable": self.unroutable,
            "peers": [self.peer_stats(peer_id).snapshot() for peer_id in sorted(self.peers)],
        }


def daphne_options(max_frame_size: int) -> dict[str, object]:
    """Keyword arguments for ``daphne.server.Server`` so daphne's limits agree with ours.

    Daphne's own default websocket message limit is 1 MiB; a frame above it is cut off by
    autobahn (close 1009) before our consumer sees it. ``websocket_timeout=-1`` stops daphne
    from closing every websocket after its default 24 h (peer links would just reconnect, but
    the blip is pointless).
    """
    return {
        "websocket_max_message_size": max_frame_size,
        "websocket_max_frame_size": max_frame_size,
        "websocket_timeout": -1,
    }


# --- the installed transport ---------------------------------------------------------------

_installed: PeerTransport | None = None


def install(transport: PeerTransport) -> None:
    """Make ``transport`` the one the consumers of this process deliver to."""
    global _installed
    if _installed is not None and _installed is not transport:
        raise LocalProtocolError(
            f"{_installed!r} is already installed; uninstall() it first (one runtime per process)"
        )
    _installed = transport


def uninstall(transport: PeerTransport | None = None) -> None:
    """Remove the installed transport (only if it is ``transport``, when given)."""
    global _installed
    if transport is None or _installed is transport:
        _installed = None


def get_transport() -> PeerTransport | None:
    return _installed
