"""PeerConsumer through channels' WebsocketCommunicator, routed like production (consensus.routing).

Each test asserts two things: what reached the runtime's inbound callback (only valid, correctly
addressed messages) and how the connection ended (the close code, or still open).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgpack
import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from consensus.core.ballot import Ballot
from consensus.core.messages import Accepted, Command, Forward, Message
from consensus.routing import websocket_urlpatterns
from consensus.transport import codec, hub
from consensus.transport.auth import ClientHandshake
from consensus.transport.client import LinkOptions
from consensus.transport.closecodes import CloseCode
from consensus.transport.codec import encode_frame
from consensus.transport.hub import PeerTransport
from consensus.transport.peers import PeerAddress

SECRET = "s3cret"
ME = 2
NODES = [PeerAddress(1, "127.0.0.1", 1), PeerAddress(2, "127.0.0.1", 2), PeerAddress(3, "h", 3)]
B = Ballot(4, 1)


def accepted(src: int = 1, dst: int = ME, group_id: int = 1, instance: int = 1) -> Accepted:
    return Accepted(group_id=group_id, src=src, dst=dst, ballot=B, instance=instance)


class Inbox:
    """The runtime's side: records what on_messages was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[Message]]] = []

    def __call__(self, src: int, messages: list[Message]) -> None:
        self.calls.append((src, messages))

    @property
    def messages(self) -> list[Message]:
        return [m for _, batch in self.calls for m in batch]


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def options() -> LinkOptions:
    return LinkOptions(max_frame_size=4096, max_messages_per_frame=50, handshake_timeout=0.3)


@pytest.fixture
def transport(inbox: Inbox, options: LinkOptions) -> Iterator[PeerTransport]:
    transport = PeerTransport(
        node_id=ME, nodes=NODES, secret=SECRET, on_messages=inbox, options=options
    )
    hub.install(transport)
    yield transport
    hub.uninstall(transport)


REMOTE = "10.0.0.9:4242"


def communicator() -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/peer/")
    comm.scope["client"] = ["10.0.0.9", 4242]
    return comm


async def send_bytes(comm: WebsocketCommunicator, data: bytes) -> None:
    """send_to() refuses an empty payload; a peer can still send one."""
    await comm.send_input({"type": "websocket.receive", "bytes": data})


async def handshake(
    comm: WebsocketCommunicator, node_id: int = 1, secret: str = SECRET
) -> ClientHandshake:
    connected, _ = await comm.connect()
    assert connected
    client = ClientHandshake(secret.encode(), node_id=node_id, server_id=ME)
    await comm.send_to(bytes_data=client.receive_challenge(await comm.receive_from()))
    return client


@pytest.fixture
async def peer(transport: PeerTransport) -> AsyncIterator[WebsocketCommunicator]:
    """A communicator already authenticated as node 1."""
    comm = communicator()
    client = await handshake(comm)
    client.receive_welcome(await comm.receive_from())
    yield comm
    await comm.disconnect()


async def expect_close(comm: WebsocketCommunicator, code: CloseCode) -> dict[str, Any]:
    output = await comm.receive_output(timeout=2)
    assert output["type"] == "websocket.close", output
    assert output.get("code") == code, output
    return output


async def round_trip(comm: WebsocketCommunicator, inbox: Inbox, marker: int) -> None:
    """Send a valid frame and check it arrives: proves the link is still open and in order."""
    await comm.send_to(bytes_data=encode_frame([accepted(instance=marker)]))
    assert await comm.receive_nothing(timeout=0.05)
    assert inbox.messages[-1] == accepted(instance=marker)


# --- the happy path ----------------------------------------------------------------------------


async def test_valid_frames_reach_the_inbound_callback(
    peer: WebsocketCommunicator, inbox: Inbox, transport: PeerTransport
) -> None:
    batch = [accepted(instance=i) for i in range(1, 6)]
    frame = encode_frame(batch)
    await peer.send_to(bytes_data=frame)
    await peer.send_to(bytes_data=encode_frame([accepted(instance=6)]))
    assert await peer.receive_nothing(timeout=0.05)
    assert inbox.calls == [(1, batch), (1, [accepted(instance=6)])]  # one call per frame
    stats = transport.peer_stats(1)
    assert stats.connected_in == 1
    assert (stats.frames_received, stats.messages_received) == (2, 6)
    assert stats.bytes_received > len(frame)


async def test_wrong_group_id_is_passed_through_for_the_runtime(
    peer: WebsocketCommunicator, inbox: Inbox
) -> None:
    await peer.send_to(bytes_data=encode_frame([accepted(group_id=999)]))
    assert await peer.receive_nothing(timeout=0.05)
    assert inbox.messages == [accepted(group_id=999)]


async def test_connected_in_is_counted_and_released(
    transport: PeerTransport,
) -> None:
    comm = communicator()
    client = await handshake(comm)
    client.receive_welcome(await comm.receive_from())
    assert transport.peer_stats(1).connected_in == 1
    assert transport.status()["peers"][0]["connected_in"] is True
    await comm.disconnect()
    assert transport.peer_stats(1).connected_in == 0


async def test_a_failing_callback_does_not_break_the_link(
    peer: WebsocketCommunicator, inbox: Inbox, transport: PeerTransport
) -> None:
    def explode(src: int, messages: list[Message]) -> None:
        raise RuntimeError("runtime bug")

    transport._on_messages = explode
    await peer.send_to(bytes_data=encode_frame([accepted()]))
    assert await peer.receive_nothing(timeout=0.05)
    transport._on_messages = inbox
    await round_trip(peer, inbox, marker=2)


# --- frames that are dropped, link kept --------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [accepted(src=3), accepted(dst=3), accepted(src=2, dst=2)],
    ids=["src is another member", "dst is another node", "src is this node"],
)
async def test_misaddressed_frame_is_dropped_whole_and_the_link_stays(
    peer: WebsocketCommunicator, inbox: Inbox, transport: PeerTransport, bad: Accepted
) -> None:
    await peer.send_to(bytes_data=encode_frame([accepted(instance=7), bad]))
    assert await peer.receive_nothing(timeout=0.05)
    assert inbox.messages == []  # the valid message in the same frame went too
    assert transport.peer_stats(1).dropped_inbound == 2
    await round_trip(peer, inbox, marker=8)


# --- frames that close the link ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x00garbage\xff" * 3,
        encode_frame([accepted()])[:-2],  # truncated
        msgpack.packb([codec.VERSION, [[42, 1, 1, 2]]]),  # unknown type tag
        msgpack.packb([codec.VERSION + 1, []]),  # wrong version
        msgpack.packb([codec.VERSION, [[4, 1, 1, 2, [4, 1], -1]]]),  # negative instance
        msgpack.packb([codec.VERSION, [[4, True, 1, 2, [4, 1], 1]]]),  # bool for int
        encode_frame([accepted(instance=i) for i in range(51)]),  # too many messages
        b"",
        # Values a buggy or corrupted peer could send, which a node once stored or acted on:
        msgpack.packb([codec.VERSION, [[4, 1, 1, 2, [4, 1], 2**63 - 1]]]),  # instance: OOM
        msgpack.packb([codec.VERSION, [[0, 1, 1, 2, [2**63 - 1, 1], 1, True, 7]]]),  # round
        msgpack.packb([codec.VERSION, [[4, 1, 1, 2, [2**62, 1], 1]]]),  # round one past
        msgpack.packb([codec.VERSION, [[4, 2**31, 1, 2, [4, 1], 1]]]),  # group id
        msgpack.packb([codec.VERSION, [[0, 1, 1, 2, [5, 2**40], 1, True, 7]]]),  # ballot node
        msgpack.packb([codec.VERSION, [[7, 1, 1, 2, 1, 2**64 - 1]]]),  # LearnRequest range
    ],
    ids=[
        "garbage",
        "truncated",
        "unknown type",
        "version",
        "negative",
        "bool",
        "too many",
        "empty",
        "instance 2**63-1",
        "round 2**63-1",
        "round 2**62",
        "group 2**31",
        "ballot node 2**40",
        "learn to 2**64-1",
    ],
)
async def test_undecodable_frame_closes_the_link(
    peer: WebsocketCommunicator,
    inbox: Inbox,
    data: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await peer.send_to(bytes_data=encode_frame([accepted(instance=1)]))
    await send_bytes(peer, data)
    await peer.send_to(bytes_data=encode_frame([accepted(instance=3)]))  # after the close
    await expect_close(peer, CloseCode.BAD_FRAME)
    assert inbox.messages == [accepted(instance=1)]
    warnings = [r for r in caplog.records if r.name == "consensus.transport.consumers"]
    assert len(warnings) == 1
    assert "undecodable frame" in warnings[0].getMessage()
    assert f"node 1 ({REMOTE})" in warnings[0].getMessage()


async def test_oversized_frame_closes_the_link(peer: WebsocketCommunicator, inbox: Inbox) -> None:
    big = Forward(group_id=1, src=1, dst=ME, commands=(Command("r", "x" * 5000),))
    frame = encode_frame([big])
    assert len(frame) > 4096
    await peer.send_to(bytes_data=frame)
    await expect_close(peer, CloseCode.FRAME_TOO_LARGE)
    assert inbox.calls == []


async def test_text_frame_closes_the_link(peer: WebsocketCommunicator, inbox: Inbox) -> None:
    await peer.send_to(text_data='{"type": "accepted"}')
    await expect_close(peer, CloseCode.PROTOCOL_ERROR)
    assert inbox.calls == []


# --- the handshake -----------------------------------------------------------------------------


async def test_text_frame_before_the_handshake(transport: PeerTransport, inbox: Inbox) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await comm.receive_from()  # the challenge
    await comm.send_to(text_data="hello")
    await expect_close(comm, CloseCode.PROTOCOL_ERROR)
    await comm.disconnect()


async def test_paxos_frame_without_handshake_is_refused(
    transport: PeerTransport, inbox: Inbox
) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await comm.receive_from()
    await comm.send_to(bytes_data=encode_frame([accepted()]))
    await expect_close(comm, CloseCode.AUTH_FAILED)
    assert inbox.calls == []
    assert transport.peer_stats(1).connected_in == 0
    await comm.disconnect()


@pytest.mark.parametrize(
    ("node_id", "secret"),
    [(1, "wrong secret"), (9, SECRET), (ME, SECRET)],
    ids=["wrong secret", "unknown member", "this node's own id"],
)
async def test_failed_authentication_closes_the_link(
    transport: PeerTransport,
    inbox: Inbox,
    node_id: int,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    comm = communicator()
    await handshake(comm, node_id=node_id, secret=secret)
    await expect_close(comm, CloseCode.AUTH_FAILED)
    assert "failed the handshake" in caplog.text
    await comm.disconnect()


async def test_replayed_hello_is_refused(transport: PeerTransport) -> None:
    first = communicator()
    assert (await first.connect())[0]
    client = ClientHandshake(SECRET.encode(), node_id=1, server_id=ME)
    recorded = client.receive_challenge(await first.receive_from())
    await first.send_to(bytes_data=recorded)
    client.receive_welcome(await first.receive_from())
    await first.disconnect()

    second = communicator()
    assert (await second.connect())[0]
    await second.receive_from()  # a fresh challenge
    await second.send_to(bytes_data=recorded)
    await expect_close(second, CloseCode.AUTH_FAILED)
    await second.disconnect()


async def test_handshake_must_complete_in_time(
    transport: PeerTransport, caplog: pytest.LogCaptureFixture
) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await comm.receive_from()
    await expect_close(comm, CloseCode.HANDSHAKE_TIMEOUT)  # options: 0.3 s
    assert "did not authenticate within 0.3s" in caplog.text
    await comm.disconnect()


async def test_no_transport_installed_refuses_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert hub.get_transport() is None
    comm = communicator()
    connected, _ = await comm.connect()
    assert not connected
    assert "runs no Paxos transport" in caplog.text
    await comm.disconnect()


async def test_stopping_the_transport_closes_inbound_links_and_refuses_new_ones(
    peer: WebsocketCommunicator, transport: PeerTransport, inbox: Inbox
) -> None:
    await transport.stop()
    await expect_close(peer, CloseCode.SHUTTING_DOWN)
    assert transport.peer_stats(1).connected_in == 0
    late = communicator()
    assert not (await late.connect())[0]
    await late.disconnect()


async def test_a_bug_in_the_consumer_costs_only_the_link(
    peer: WebsocketCommunicator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> list[Message]:
        raise RuntimeError("consumer bug")

    monkeypatch.setattr("consensus.transport.consumers.decode_frame", broken)
    await peer.send_to(bytes_data=encode_frame([accepted()]))
    await expect_close(peer, CloseCode.INTERNAL_ERROR)
    assert "bug while handling websocket.receive from node 1" in caplog.text
    assert "RuntimeError: consumer bug" in caplog.text
