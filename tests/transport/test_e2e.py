"""Two real daphne processes serving paxos_site.asgi, each with a PeerTransport: messages cross in
both directions over real websockets, and the refusals work through daphne too.

Every process is started by this module and stopped by PID (SIGTERM, then SIGKILL) in a
``finally``, whatever happens to the test.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from consensus.core.ballot import Ballot
from consensus.core.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    ChosenEntry,
    Command,
    Forward,
    Heartbeat,
    LearnReply,
    Message,
    Promise,
)
from consensus.management.processes import stop_nodes
from consensus.transport.auth import ClientHandshake
from consensus.transport.closecodes import CloseCode
from consensus.transport.codec import decode_frame, encode_frame

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret"


class NodeProcess:
    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "paxos_site.settings"}
        env.pop("PAXOS_CONFIG", None)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.transport.peer_server"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.port = 0

    def wait_listening(self) -> None:
        self.port = int(self.expect("LISTENING", timeout=30).split()[1])

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 10) -> str:
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if line.startswith(prefix):
                    return line
        except queue.Empty:
            raise AssertionError(
                f"{self.name}: no {prefix!r} line within {timeout}s; log:\n"
                + self.log_path.read_text()[-3000:]
            ) from None

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def received(self, count: int, timeout: float = 10) -> list[tuple[int, Message]]:
        got: list[tuple[int, Message]] = []
        while len(got) < count:
            _, src, payload = self.expect("RECV", timeout=timeout).split()
            got += [(int(src), m) for m in decode_frame(bytes.fromhex(payload))]
        return got

    def kill(self) -> None:
        """Stop by PID: SIGTERM (daphne stops its reactor), SIGKILL if that is not enough."""
        stop_nodes({0: self.proc}, timeout=5)
        self._pump_thread.join(timeout=5)  # stdout reaches EOF once the process is gone
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


@pytest.fixture
def cluster() -> Iterator[tuple[NodeProcess, NodeProcess]]:
    started: list[NodeProcess] = []
    with tempfile.TemporaryDirectory() as log_dir:
        try:
            for name in ("node1", "node2"):
                started.append(NodeProcess(name, Path(log_dir)))  # registered before any wait
            for node in started:
                node.wait_listening()
            yield started[0], started[1]
        finally:
            for node in started:
                node.kill()


def start_transports(one: NodeProcess, two: NodeProcess) -> None:
    nodes = [[1, "127.0.0.1", one.port], [2, "127.0.0.1", two.port]]
    for node_id, node in ((1, one), (2, two)):
        node.command("start " + json.dumps({"node_id": node_id, "nodes": nodes, "secret": SECRET}))
        node.expect("STARTED")


def sample(src: int, dst: int) -> list[Message]:
    ballot = Ballot(5, src)
    value = (Command("req-1", '{"type": "put", "key": "k", "value": "v"}'), Command("req-2", ""))
    return [
        Accept(group_id=1, src=src, dst=dst, ballot=ballot, instance=1, value=value, chosen_upto=0),
        Accepted(group_id=2, src=src, dst=dst, ballot=ballot, instance=1),
        Heartbeat(group_id=1, src=src, dst=dst, ballot=ballot, chosen_upto=1, seq=3),
        Promise(
            group_id=1,
            src=src,
            dst=dst,
            ballot=ballot,
            first_instance=1,
            chosen_upto=0,
            accepted=(AcceptedEntry(1, ballot, value, False),),
        ),
        LearnReply(group_id=1, src=src, dst=dst, entries=(ChosenEntry(1, value),), chosen_upto=1),
        Forward(group_id=1, src=src, dst=dst, commands=value),
    ]


def test_two_daphne_nodes_exchange_messages_both_ways(
    cluster: tuple[NodeProcess, NodeProcess],
) -> None:
    one, two = cluster
    url = f"ws://127.0.0.1:{one.port}/ws/peer/"

    # Before a transport is installed, daphne refuses the peer route.
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=5).close()
    assert refused.value.response.status_code == 403

    start_transports(one, two)

    forward = sample(src=1, dst=2)
    one.command("send " + encode_frame(forward).hex())
    assert two.received(len(forward)) == [(1, m) for m in forward]

    backward = sample(src=2, dst=1)
    two.command("send " + encode_frame(backward).hex())
    assert one.received(len(backward)) == [(2, m) for m in backward]

    # Many messages sent at once arrive complete and in order.
    burst = [
        Accepted(group_id=1, src=1, dst=2, ballot=Ballot(5, 1), instance=i) for i in range(3000)
    ]
    one.command("send " + encode_frame(burst).hex())
    assert two.received(len(burst)) == [(1, m) for m in burst]

    one.command("status")
    status = json.loads(one.expect("STATUS").split(" ", 1)[1])
    (peer,) = status["peers"]
    assert peer["node_id"] == 2
    assert peer["connected_out"] is True
    assert peer["connected_in"] is True  # node 2's link to node 1
    assert peer["messages_sent"] == len(forward) + len(burst)
    assert peer["messages_received"] == len(backward)

    one.command("stop")
    one.expect("STOPPED")


def test_daphne_closes_bad_peers_with_our_codes(
    cluster: tuple[NodeProcess, NodeProcess],
) -> None:
    one, two = cluster
    start_transports(one, two)
    url = f"ws://127.0.0.1:{one.port}/ws/peer/"

    # Wrong secret: closed with AUTH_FAILED.
    with connect(url, open_timeout=5, compression=None) as websocket:
        handshake = ClientHandshake(b"wrong", node_id=2, server_id=1)
        websocket.send(handshake.receive_challenge(websocket.recv(timeout=5)))
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=5)
    assert websocket.close_code == CloseCode.AUTH_FAILED

    # Authenticated, then garbage: closed with BAD_FRAME.
    with connect(url, open_timeout=5, compression=None) as websocket:
        handshake = ClientHandshake(SECRET.encode(), node_id=2, server_id=1)
        websocket.send(handshake.receive_challenge(websocket.recv(timeout=5)))
        handshake.receive_welcome(websocket.recv(timeout=5))
        websocket.send(b"\xc1 definitely not msgpack")
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=5)
    assert websocket.close_code == CloseCode.BAD_FRAME

    # Text frame: closed with PROTOCOL_ERROR.
    with connect(url, open_timeout=5, compression=None) as websocket:
        websocket.recv(timeout=5)
        websocket.send("hello?")
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=5)
    assert websocket.close_code == CloseCode.PROTOCOL_ERROR

    # The real link from node 2 was not disturbed.
    messages = sample(src=2, dst=1)
    two.command("send " + encode_frame(messages).hex())
    assert one.received(len(messages)) == [(2, m) for m in messages]
    log = one.log_path.read_text()
    assert "failed the handshake" in log
    assert "undecodable frame" in log
    assert "text frame" in log
