"""A real daphne server with the node's HTTP protocol (``daphne_http``), serving a small ASGI app
whose routes show what the protocol hands an application. Run as a child process by
test_daphne_http.py (``python -m tests.transport.http_server``); it prints ``LISTENING <port>``
once it accepts connections and runs until SIGTERM.

Routes (any method):
  /echo        reads the whole body; answers JSON: the scope's fields, the body and the number of
               http.request messages it came in
  /slow        /echo, a fifth of a second later
  /sleep       answers after five seconds (or as many as its query string says), without
               reading its body

Idle connections are closed after one second here (``daphne_http.IDLE_TIMEOUT``), not 60.
  /stream      three body messages without a content-length (chunked on the wire)
  /early       413 at once, without reading the body
  /start-then-read  starts its answer, then reads the body and answers with it
  /partial     starts a chunked answer at once, then reads the body and ends the answer with it
  /status      answers with the status code its query string names
  /fail        raises before answering
  /hang        never answers; counts the http.disconnect it then receives
  /disconnects the count /hang's requests have seen
  websocket    echoes each text message (frames above 64 KiB too: it lifts ws_limits' limit)
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from consensus.management import daphne_http
from consensus.management.daphne_server import ReapingServer  # installs the reactor
from consensus.transport import ws_limits

disconnects = 0


async def respond(send: Any, status: int, body: bytes, **extra: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(name.encode(), value) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body, messages = b"", 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        messages += 1
        if not message.get("more_body", False):
            break
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "http_version": scope["http_version"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "client": scope["client"],
        "body": body.decode("latin-1"),
        "messages": messages,
    }
    await respond(send, 200, json.dumps(seen).encode())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global disconnects
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        ws_limits.allow_full_frames(scope)  # as the project's consumers do once authenticated
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await asyncio.sleep(0.2)
        await echo(scope, receive, send)
    elif path == "/status":
        await respond(send, int(scope["query_string"]), b"{}")
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or 5))
        await respond(send, 200, b"{}")
    elif path == "/start-then-read":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        message = await receive()  # the head goes out with the first body message, below
        await send({"type": "http.response.body", "body": message.get("body", b"")})
    elif path == "/early":
        await respond(send, 413, b'{"error": "too large"}')
    elif path == "/partial":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started,", "more_body": True})
        message = {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fail":
        raise RuntimeError("the application failed on purpose")
    elif path == "/hang":
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnects += 1
    elif path == "/disconnects":
        await respond(send, 200, json.dumps(disconnects).encode())
    else:
        await echo(scope, receive, send)


def main() -> None:
    daphne_http.IDLE_TIMEOUT = 1.0
    daphne_http.install()
    server: ReapingServer

    def ready() -> None:
        host, port = server.listening_addresses[0]
        sys.stdout.write(f"LISTENING {port}\n")
        sys.stdout.flush()

    server = ReapingServer(
        application=app,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        signal_handlers=True,
        ready_callable=ready,
    )
    server.run()


if __name__ == "__main__":
    main()
