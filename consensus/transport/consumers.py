"""``PeerConsumer``: the receiving end of a peer link (route ``ws/peer/``), served by daphne.

Theory of operation
-------------------
Per connection: refuse it outright (HTTP 403) unless this process runs a Paxos transport; accept,
send the Challenge, and give the peer ``handshake_timeout`` seconds to authenticate (auth.py).
The first frame must be its Hello. From then on every frame is a batch of Paxos messages:

    binary frame -> size check -> codec.decode_frame -> every message has src == the
    authenticated peer and dst == this node? -> transport.deliver(src, messages)

``deliver`` is a synchronous queue put into the runtime: nothing per message is awaited here,
because a channels consumer handles one event at a time per connection and anything slow in this
path throttles the whole link.

Failures and what they cost:
* undecodable frame, text frame, oversized frame, bad or late handshake: one log line naming the
  remote address, then the connection is closed with a 4xxx code (closecodes.py); the peer's link
  reconnects with backoff. Other connections are unaffected.
* a frame whose messages claim another ``src`` or another ``dst``: the frame is dropped and
  counted, the link stays up (an authenticated peer sending that is buggy, not hostile, and Paxos
  tolerates the loss).
* a wrong ``group_id`` is *not* checked here: the runtime owns the group table and rejects it.
* an exception in this code: logged with its traceback, connection closed (INTERNAL_ERROR); it
  never propagates into daphne.

Two deliberate departures from channels' defaults, both for per-frame cost:
``AsyncConsumer.dispatch`` (channels >= 4.2) runs ``close_old_connections`` in a worker thread
before *every* event, a thread round trip per frame for a consumer that never touches the
database; and ``await_many_dispatch`` creates tasks per event to also listen on a channel layer,
which peer links do not use. ``__call__`` below is the plain ASGI receive loop instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import ws_limits
from .auth import AuthError, ConfigDiffers, ServerHandshake, unchecked
from .closecodes import CloseCode, close_reason, describe
from .codec import CodecError, decode_frame
from .hub import PeerTransport, get_transport

__all__ = ["PeerConsumer"]

logger = logging.getLogger(__name__)


class PeerConsumer(AsyncWebsocketConsumer):
    """Receives frames from one authenticated peer and hands them to the installed transport."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport: PeerTransport | None = None
        self._handshake: ServerHandshake | None = None
        self._peer_id: int | None = None
        """The authenticated node id; None until the Hello is verified."""
        self._proven_id: int | None = None
        """A node that proved the secret but was refused (its node list or a group's state
        machine differs)."""
        self._inbound_token: object | None = None
        self._deadline: asyncio.Task[None] | None = None
        self._closing = False
        self._remote = "unknown address"
        self._misrouted_frames = 0

    # --- ASGI plumbing -----------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                message = await receive()
                handler_name = self._HANDLERS.get(message.get("type"))
                if handler_name is None:
                    continue  # not a websocket event: the ASGI spec says ignore
                try:
                    await getattr(self, handler_name)(message)
                except StopConsumer:
                    raise
                except Exception:  # a bug here must cost one link, never daphne's worker
                    logger.exception(
                        "node %d: bug while handling %s from %s; closing the link",
                        self._node_id,
                        message.get("type"),
                        self._who(),
                    )
                    await self._close(CloseCode.INTERNAL_ERROR, "internal error")
        except StopConsumer:
            pass

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self._remote = _describe_client(self.scope)
        transport = get_transport()
        if transport is None or not transport.accepting:
            logger.warning(
                "refusing peer link from %s: this process runs no Paxos transport", self._remote
            )
            self._closing = True
            await self.close()  # before accept(): daphne answers the upgrade with HTTP 403
            return
        self._transport = transport
        self._handshake = ServerHandshake(
            transport.secret,
            node_id=transport.node_id,
            members=transport.members,
            groups=transport.groups,
        )
        await self.accept()
        await self.send(bytes_data=self._handshake.challenge())
        self._deadline = asyncio.create_task(self._enforce_deadline(transport.handshake_timeout))

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self._closing:
            return  # frames already queued behind our close
        data = message.get("bytes")
        if data is None:
            await self._reject(
                CloseCode.PROTOCOL_ERROR, "sent a text frame; the peer protocol is binary"
            )
        elif self._peer_id is None:
            await self._on_hello(data)
        else:
            await self._on_frame(data)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._closing = True
        if self._deadline is not None:
            self._deadline.cancel()
        code = message.get("code")
        if self._inbound_token is not None and self._transport is not None:
            clean = code in (1000, 1001)  # normal closure, going away: not worth a status error
            self._transport.inbound_closed(
                self._inbound_token, None if clean else f"inbound link lost ({describe(code)})"
            )
            self._inbound_token = None
            logger.info(
                "node %d: inbound link from %s closed (%s)",
                self._node_id,
                self._who(),
                describe(code),
            )
        raise StopConsumer

    _HANDLERS = {
        "websocket.connect": "websocket_connect",
        "websocket.receive": "websocket_receive",
        "websocket.disconnect": "websocket_disconnect",
    }

    # --- the protocol ------------------------------------------------------------------------

    async def _on_hello(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        assert self._handshake is not None
        try:
            peer_id, welcome = self._handshake.receive_hello(data)
        except AuthError as exc:
            if isinstance(exc, ConfigDiffers):
                self._proven_id = exc.peer_id  # it knows the secret: name it in the log line
            await self._reject(CloseCode.AUTH_FAILED, f"failed the handshake: {exc}")
            return
        if self._deadline is not None:
            self._deadline.cancel()
        ws_limits.allow_full_frames(self.scope)  # it knows the secret: a peer's frames now
        await self.send(bytes_data=welcome)
        self._peer_id = peer_id
        self._inbound_token = transport.inbound_opened(
            peer_id, self._shutdown, self._handshake.peer_groups
        )
        logger.info(
            "node %d: inbound link from node %d (%s) up%s",
            self._node_id,
            peer_id,
            self._remote,
            unchecked(self._handshake.peer_members, self._handshake.peer_groups),
        )

    async def _on_frame(self, data: bytes) -> None:
        transport = self._transport
        peer_id = self._peer_id
        assert transport is not None
        assert peer_id is not None
        if len(data) > transport.max_frame_size:
            await self._reject(
                CloseCode.FRAME_TOO_LARGE,
                f"sent a frame of {len(data)} bytes (limit {transport.max_frame_size})",
            )
            return
        try:
            messages = decode_frame(
                data, transport.max_frame_size, transport.max_messages_per_frame
            )
        except CodecError as exc:
            await self._reject(CloseCode.BAD_FRAME, f"sent an undecodable frame: {exc}")
            return
        node_id = transport.node_id
        for message in messages:
            if message.src != peer_id or message.dst != node_id:
                self._drop_misrouted(transport, len(messages), message.src, message.dst)
                return
        transport.deliver(peer_id, messages, len(data))

    def _drop_misrouted(self, transport: PeerTransport, count: int, src: int, dst: int) -> None:
        reason = f"dropped a frame from node {self._peer_id} with a message src={src} dst={dst}"
        transport.record_inbound_drop(self._peer_id or 0, count, reason)
        self._misrouted_frames += 1
        # Once per connection at WARNING: a buggy peer would otherwise flood the log.
        level = logging.WARNING if self._misrouted_frames == 1 else logging.DEBUG
        logger.log(
            level,
            "node %d: %s (%s; %d such frame(s) on this link)",
            transport.node_id,
            reason,
            self._remote,
            self._misrouted_frames,
        )

    async def _enforce_deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._peer_id is None and not self._closing:
            await self._reject(
                CloseCode.HANDSHAKE_TIMEOUT, f"did not authenticate within {seconds:g}s"
            )

    # --- closing -----------------------------------------------------------------------------

    async def _reject(self, code: CloseCode, problem: str) -> None:
        """Log one line naming the remote and the problem (a problem that repeats within a
        minute at DEBUG: ``PeerTransport.first_report``), then close with ``code``."""
        transport = self._transport
        host = self._remote.rpartition(":")[0] or self._remote
        repeated = transport is not None and not transport.first_report(f"{host} {problem}")
        (logger.debug if repeated else logger.warning)(
            "node %d: closing peer link from %s: %.300s [%s]",
            self._node_id,
            self._who(),
            problem,
            describe(code),
        )
        await self._close(code, problem)

    async def _shutdown(self, code: CloseCode, reason: str) -> None:
        """Called by PeerTransport.stop()."""
        await self._close(code, reason)

    async def _close(self, code: CloseCode, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self._deadline is not None and self._deadline is not asyncio.current_task():
            self._deadline.cancel()
        if self._inbound_token is not None and self._transport is not None:
            self._transport.inbound_closed(self._inbound_token, reason)
            self._inbound_token = None
        try:
            await self.close(code=int(code), reason=close_reason(reason))
        except Exception:  # the connection may already be gone; nothing left to do
            logger.debug("closing %s failed", self._remote, exc_info=True)

    # --- log helpers -------------------------------------------------------------------------

    @property
    def _node_id(self) -> int:
        return self._transport.node_id if self._transport is not None else -1

    def _who(self) -> str:
        if self._peer_id is not None:
            return f"node {self._peer_id} ({self._remote})"
        if self._proven_id is not None:
            return f"node {self._proven_id} ({self._remote}, refused)"
        return f"{self._remote} (not authenticated)"


def _describe_client(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    if client and len(client) == 2:
        return f"{client[0]}:{client[1]}"
    return "unknown address"
