"""daphne's ``Server``, forgetting a finished request at once instead of up to a second later.

daphne keeps an entry in ``Server.connections`` for every HTTP request (and websocket) it
serves, and deletes the entries of finished ones in ``application_checker``, a sweep over all
of them once a second; ``timeout_checker`` walks them all every two seconds too. Under REST load
a node thus holds a second's worth of finished requests (each with its request object, scope,
queue and task) and sweeps over thousands of them: py-spy put ``application_checker`` alone at
about 3% of a node's GIL time at 128 clients. Here a request whose application returned
cleanly after the response was finished is deleted as it returns; everything else (an
application that failed, was cancelled, or outlives its connection) stays for daphne's own
sweep, which logs and handles it as before.

Every websocket starts with the small frame limit of ``consensus.transport.ws_limits`` (an
unauthenticated peer could make it buffer 16 MiB frames), lifted by the consumer.

It also keeps why it could not listen (``listen_failure``) instead of only logging it, so that
``runpaxos`` can exit with an error that says so rather than status 0.

Importing this module installs Twisted's asyncio reactor (``daphne.server`` does): import it
where daphne is about to run, as ``server.py`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from daphne.server import Server

from consensus.transport import ws_limits


class ReapingServer(Server):
    listen_failure: BaseException | None = None
    """Why an endpoint could not listen (Twisted's ``CannotListenError``), if one could not."""

    def listen_error(self, failure: Any) -> None:
        """daphne's logs a CRITICAL line and stops; the caller reports ``listen_failure``."""
        self.listen_failure = failure.value
        self.stop()

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket":
            _limit_until_proven(protocol, scope)
        queue = super().create_application(protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            instance.add_done_callback(lambda done: self.reap(protocol, done))
        return queue

    def reap(self, protocol: Any, application: asyncio.Future[Any]) -> None:
        """``protocol``'s application is done: forget the protocol if its connection is over
        too and the application returned without an error; anything else is left to
        ``application_checker`` (which may also have forgotten it already)."""
        details = self.connections.get(protocol)
        if details is None or "disconnected" not in details:
            return
        if application.cancelled() or application.exception() is not None:
            return
        del self.connections[protocol]

    def protocol_disconnected(self, protocol: Any) -> None:
        """daphne's, for a protocol that may already be forgotten: a request that finished and
        was reaped can still hear that its connection closed."""
        if protocol in self.connections:
            super().protocol_disconnected(protocol)


def _limit_until_proven(protocol: Any, scope: dict[str, Any]) -> None:
    """Autobahn's per-connection limits (copied from the factory when the connection was made,
    checked against a frame's announced length before its payload is read) down to
    ``ws_limits.UNPROVEN_FRAME_LIMIT`` until the consumer calls ``allow_full_frames``; the
    unsent bytes are those of the Twisted transport's write buffer."""
    full = (protocol.maxMessagePayloadSize, protocol.maxFramePayloadSize)

    def allow_full() -> None:
        protocol.maxMessagePayloadSize, protocol.maxFramePayloadSize = full

    def unsent() -> int:
        transport = protocol.transport
        if transport is None or transport.disconnected:  # what it holds will never be sent
            return 0
        buffered = len(transport.dataBuffer) - transport.offset
        return buffered + transport._tempDataLen

    protocol.maxMessagePayloadSize = ws_limits.UNPROVEN_FRAME_LIMIT
    protocol.maxFramePayloadSize = ws_limits.UNPROVEN_FRAME_LIMIT
    ws_limits.offer(scope, allow_full, unsent)
