"""A real daphne node serving ``paxos_site.asgi`` with a PeerTransport, driven over stdin/stdout.

Used by test_e2e.py as a subprocess (``python -m tests.transport.peer_server``). Until the runtime
exists, this stands in for ``runpaxos``: it installs a transport whose inbound callback prints what
arrives, so the test sees exactly what a runtime would be handed.

stdin (one command per line)           stdout
--------------------------------       ---------------------------------------------
                                       LISTENING <port>       (daphne is accepting)
start <json {node_id, nodes, secret}>  STARTED
send <hex of an encoded frame>         (transport.send, called from this reader thread)
status                                 STATUS <json>
stop                                   STOPPED, then the process exits
                                       RECV <src> <hex of encode_frame(messages)>  (inbound)
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

# daphne.server installs Twisted's asyncio reactor when imported; it must precede twisted's import
# (alphabetical order happens to guarantee it). paxos_site.asgi sets DJANGO_SETTINGS_MODULE.
from daphne.server import Server, twisted_loop
from twisted.internet import reactor

from consensus.core.messages import Message
from consensus.transport import (
    LinkOptions,
    PeerAddress,
    PeerTransport,
    daphne_options,
    install,
)
from consensus.transport.codec import decode_frame, encode_frame
from paxos_site.asgi import application

_print_lock = threading.Lock()


def emit(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def on_messages(src: int, messages: list[Message]) -> None:
    emit(f"RECV {src} {encode_frame(messages).hex()}")


def on_loop(coroutine: object) -> object:
    return asyncio.run_coroutine_threadsafe(coroutine, twisted_loop).result(timeout=10)  # type: ignore[arg-type]


def control(server: Server) -> None:
    transport: PeerTransport | None = None
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "start":
            spec = json.loads(argument)
            transport = PeerTransport(
                node_id=spec["node_id"],
                nodes=[PeerAddress(*node) for node in spec["nodes"]],
                secret=spec["secret"],
                on_messages=on_messages,
                options=LinkOptions(backoff_min=0.02, backoff_max=0.2),
            )
            install(transport)
            on_loop(transport.start())
            emit("STARTED")
        elif command == "send" and transport is not None:
            transport.send(decode_frame(bytes.fromhex(argument)))
        elif command == "status" and transport is not None:
            emit("STATUS " + json.dumps(transport.status()))
        elif command == "stop":
            if transport is not None:
                on_loop(transport.stop())
            emit("STOPPED")
            break
    reactor.callFromThread(reactor.stop)


def main() -> None:
    server = Server(
        application=application,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        signal_handlers=True,
        verbosity=0,
        **daphne_options(1024 * 1024),  # type: ignore[arg-type]
    )

    def announce_port() -> None:
        if server.listening_addresses:
            emit(f"LISTENING {server.listening_addresses[0][1]}")
            threading.Thread(target=control, args=(server,), daemon=True).start()
        else:
            reactor.callLater(0.05, announce_port)

    reactor.callLater(0.05, announce_port)
    server.run()


if __name__ == "__main__":
    main()
