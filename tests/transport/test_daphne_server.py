"""``consensus.management.daphne_server.ReapingServer``: a finished request is forgotten as its
application returns; anything else stays for daphne's own sweep.

The cases run in a child: importing ``daphne.server`` installs Twisted's reactor process-wide.
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = r"""
import asyncio, json
from consensus.management.daphne_server import ReapingServer

async def returns(scope, receive, send):
    await asyncio.sleep(0)

async def fails(scope, receive, send):
    raise RuntimeError("boom")

server = ReapingServer(application=returns, endpoints=["tcp:port=0:interface=127.0.0.1"])
server.connections = {}  # as Server.run() starts it
loop = asyncio.get_event_loop()
results = {}

def case(name, app, disconnected_before, disconnected_after=False):
    server.application = app
    protocol = object()
    server.protocol_connected(protocol)
    if disconnected_before:
        server.protocol_disconnected(protocol)
    server.create_application(protocol, {"type": "http"})
    loop.run_until_complete(asyncio.sleep(0.01))
    if disconnected_after:
        server.protocol_disconnected(protocol)
    results[name] = protocol in server.connections
    return protocol

reaped = case("finished, then returned", returns, disconnected_before=True)
server.protocol_disconnected(reaped)  # must not raise for a forgotten protocol
case("returned, still connected", returns, disconnected_before=False)
case("returned, then disconnected", returns, disconnected_before=False, disconnected_after=True)
case("failed after the connection ended", fails, disconnected_before=True)
print(json.dumps(results))
"""


def test_only_cleanly_finished_requests_are_reaped_at_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CASES], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    still_known = json.loads(done.stdout.splitlines()[-1])
    assert still_known == {
        "finished, then returned": False,  # the REST request: gone as its application returns
        "returned, still connected": True,
        "returned, then disconnected": True,  # daphne's sweep deletes it, as before
        "failed after the connection ended": True,  # daphne's sweep logs the error
    }
