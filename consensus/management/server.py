"""Run one node, the composition root: daphne serving the Django site on the node's port, the
Paxos runtime and the dashboard feed, in one process and one event loop (daphne runs Twisted on
asyncio; the runtime is a task on that loop).

Daphne has no ASGI lifespan, so the runtime starts from daphne's ``ready_callable`` and stops from
a Twisted "before shutdown" trigger, which daphne's own SIGTERM/SIGINT handling fires.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from django.conf import settings

from consensus.config import ClusterConfig
from consensus.runtime import install_node
from consensus.runtime.node import PaxosNode
from consensus.statemachine import StateMachine

logger = logging.getLogger("consensus.runtime")


def serve(
    config: ClusterConfig,
    machines: dict[int, StateMachine],
    *,
    tick_ms: int,
    request_timeout: float,
    max_frame_size: int,
) -> None:
    """Block until SIGTERM/SIGINT; then stop the runtime cleanly and return."""
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server  # installs Twisted's asyncio reactor: import it late

    from consensus.dashboard.monitoring import Monitoring  # metrics + live dashboard feed
    from consensus.transport.hub import daphne_options
    from paxos_site.asgi import application

    me = config.me
    monitoring = Monitoring()
    node = PaxosNode(
        config,
        machines,
        tick_ms=tick_ms,
        request_timeout=request_timeout,
        max_frame_size=max_frame_size,
        observer=monitoring.observer,
        result_ttl=_positive_or_none(getattr(settings, "PAXOS_REQUEST_RESULT_TTL", None)),
        result_max=_positive_or_none(getattr(settings, "PAXOS_REQUEST_RESULT_MAX", None)),
        prune_interval=float(getattr(settings, "PAXOS_PRUNE_INTERVAL", 60.0)),
        read_mode=getattr(settings, "PAXOS_READ_MODE", "index"),
    )
    install_node(node)
    started: dict[str, asyncio.Future[Any]] = {}

    def on_ready() -> None:
        started["future"] = asyncio.ensure_future(_start(node, me.host, me.port))
        monitoring.start(node)

    def before_shutdown() -> Any:
        from twisted.internet.defer import Deferred

        logger.info("node %s stopping", node.node_id)
        monitoring.stop()
        return Deferred.fromFuture(asyncio.ensure_future(node.stop()))

    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined]
    server = Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=me.host, port=me.port),
        signal_handlers=True,
        ready_callable=on_ready,
        action_logger=None,
        **daphne_options(max_frame_size),  # type: ignore[arg-type]
    )
    server.run()
    install_node(None)
    future = started.get("future")
    if future is not None and future.done() and future.exception() is not None:
        raise future.exception()  # type: ignore[misc]
    logger.info("node %s stopped", node.node_id)


async def _start(node: PaxosNode, host: str, port: int) -> None:
    try:
        await node.start()
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


def _positive_or_none(value: object) -> float | None:
    """Settings use -1 (or None) for "no bound"."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if number >= 0 else None
