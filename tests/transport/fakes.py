"""A stand-in for a peer's consumer: a plain ``websockets`` server that runs the server side of
the handshake and records the frames it receives. PeerLink is tested against it, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from consensus.core.messages import Message
from consensus.transport.auth import AuthError, ServerHandshake, Welcome, encode_handshake
from consensus.transport.closecodes import CloseCode
from consensus.transport.codec import decode_frame


class RecordingPeer:
    """Modes: ``normal``; ``silent`` (never sends a challenge); ``forged_welcome`` (skips checking
    the client and answers with a made-up MAC); ``close_after_frame`` (closes every connection
    with BAD_FRAME after its first data frame); ``http_403`` (refuses the upgrade); ``frozen``
    (authenticates, then reads nothing more, and answers no ping: a stopped process)."""

    def __init__(
        self,
        *,
        node_id: int = 2,
        secret: bytes = b"secret",
        members: Collection[int] = (1, 2, 3),
        mode: str = "normal",
    ) -> None:
        self.node_id = node_id
        self.secret = secret
        self.members = members
        self.mode = mode
        self.frames: list[bytes] = []
        self.messages: list[Message] = []
        self.connections = 0
        self.auth_failures = 0
        self.closed_codes: list[int | None] = []
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> RecordingPeer:
        kwargs: dict[str, Any] = {}
        if self.mode == "http_403":
            kwargs["process_request"] = lambda connection, request: connection.respond(
                HTTPStatus.FORBIDDEN, "no transport\n"
            )
        self._server = await serve(
            self._handle, "127.0.0.1", port, compression=None, max_size=2**22, **kwargs
        )
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[index]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    async def _handle(self, websocket: ServerConnection) -> None:
        try:
            await self._serve(websocket)
        except ConnectionClosed:
            pass
        finally:
            self.closed_codes.append(websocket.close_code)
            self._notify()

    async def _serve(self, websocket: ServerConnection) -> None:
        if self.mode == "silent":
            await websocket.wait_closed()
            return
        handshake = ServerHandshake(self.secret, node_id=self.node_id, members=self.members)
        await websocket.send(handshake.challenge())
        hello = await websocket.recv()
        if self.mode == "forged_welcome":
            await websocket.send(encode_handshake(Welcome(mac=b"\x00" * 32)))
            await websocket.wait_closed()
            return
        try:
            _, welcome = handshake.receive_hello(hello)
        except AuthError:
            self.auth_failures += 1
            self._notify()
            await websocket.close(CloseCode.AUTH_FAILED, "authentication failed")
            return
        await websocket.send(welcome)
        self.connections += 1
        self._notify()
        if self.mode == "frozen":
            websocket.transport.pause_reading()
            await websocket.wait_closed()
            return
        async for frame in websocket:
            assert isinstance(frame, bytes)
            self.frames.append(frame)
            self.messages += decode_frame(frame, max_size=2**22)
            self._notify()
            if self.mode == "close_after_frame":
                await websocket.close(CloseCode.BAD_FRAME, "test closes after one frame")
                return
