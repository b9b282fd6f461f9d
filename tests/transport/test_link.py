"""PeerLink (the outbound side) against an in-process websockets server playing the peer."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from collections.abc import AsyncIterator

import pytest

from consensus.core.ballot import Ballot
from consensus.core.messages import Accept, Accepted, Command, Forward
from consensus.transport.client import LinkOptions, PeerLink
from consensus.transport.peers import PeerAddress
from tests.fixtures.polling import wait_until

from .fakes import RecordingPeer

SECRET = b"secret"
B = Ballot(2, 1)
FAST = LinkOptions(backoff_min=0.01, backoff_max=0.05, handshake_timeout=0.3, connect_timeout=1)


def accepted(instance: int) -> Accepted:
    return Accepted(group_id=1, src=1, dst=2, ballot=B, instance=instance)


def make_link(port: int, options: LinkOptions = FAST, secret: bytes = SECRET) -> PeerLink:
    return PeerLink(
        node_id=1,
        peer=PeerAddress(2, "127.0.0.1", port),
        secret=secret,
        options=options,
        rng=random.Random(7),
    )


@pytest.fixture
async def peer() -> AsyncIterator[RecordingPeer]:
    server = await RecordingPeer(secret=SECRET).start()
    yield server
    await server.stop()


@pytest.fixture
async def links() -> AsyncIterator[list[PeerLink]]:
    """Links registered here are stopped even if the test fails."""
    created: list[PeerLink] = []
    yield created
    for link in created:
        await link.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_queued_messages_leave_in_order_batched_into_few_frames(
    peer: RecordingPeer, links: list[PeerLink]
) -> None:
    link = make_link(peer.port)
    links.append(link)
    batch = [accepted(i) for i in range(500)]
    link.enqueue(batch)  # queued before the link is even up
    link.start()
    await peer.wait_for(lambda: len(peer.messages) == 500)
    assert peer.messages == batch
    assert len(peer.frames) == 1
    link.enqueue([accepted(500)])
    link.enqueue([accepted(501)])
    await peer.wait_for(lambda: len(peer.messages) == 502)
    stats = link.stats
    assert stats.connected_out
    assert (stats.connects, stats.messages_sent) == (1, 502)
    assert stats.frames_sent == len(peer.frames)
    assert stats.bytes_sent == sum(len(frame) for frame in peer.frames)


async def test_batching_grows_with_load(peer: RecordingPeer, links: list[PeerLink]) -> None:
    link = make_link(peer.port)
    links.append(link)
    link.start()
    await wait_until(lambda: link.stats.connected_out)
    for i in range(2000):  # enqueued from the loop without yielding: one burst
        link.enqueue([accepted(i)])
    await peer.wait_for(lambda: len(peer.messages) == 2000)
    assert len(peer.frames) <= 2
    assert [m.instance for m in peer.messages] == list(range(2000))


async def test_reconnects_after_the_peer_closes_the_link(links: list[PeerLink]) -> None:
    peer = await RecordingPeer(secret=SECRET, mode="close_after_frame").start()
    try:
        link = make_link(peer.port)
        links.append(link)
        link.start()
        link.enqueue([accepted(1)])
        await peer.wait_for(lambda: len(peer.messages) == 1)
        await wait_until(lambda: link.stats.connects == 2)  # redialled by itself
        link.enqueue([accepted(2)])
        await peer.wait_for(lambda: len(peer.messages) == 2)
        assert link.stats.reconnects >= 1
        assert link.stats.last_error is not None
        assert "4003 BAD_FRAME" in link.stats.last_error
    finally:
        await peer.stop()


async def test_connects_once_the_peer_comes_up(links: list[PeerLink]) -> None:
    port = free_port()
    link = make_link(port)
    links.append(link)
    link.enqueue([accepted(1)])
    link.start()
    await wait_until(lambda: link.stats.connect_failures >= 2)
    assert "cannot connect" in (link.stats.last_error or "")
    assert not link.stats.connected_out
    peer = await RecordingPeer(secret=SECRET).start(port)
    try:
        await peer.wait_for(lambda: peer.messages == [accepted(1)])
    finally:
        await peer.stop()


async def test_wrong_secret_is_refused_by_the_peer(links: list[PeerLink]) -> None:
    peer = await RecordingPeer(secret=b"the real secret").start()
    try:
        link = make_link(peer.port)
        links.append(link)
        link.enqueue([accepted(1)])
        link.start()
        await peer.wait_for(lambda: peer.auth_failures >= 2)  # it keeps retrying, with backoff
        assert peer.messages == []
        assert "4001 AUTH_FAILED" in (link.stats.last_error or "")
        assert link.stats.connects == 0
    finally:
        await peer.stop()


async def test_impostor_peer_is_refused_by_the_link(links: list[PeerLink]) -> None:
    peer = await RecordingPeer(secret=SECRET, mode="forged_welcome").start()
    try:
        link = make_link(peer.port)
        links.append(link)
        link.enqueue([accepted(1)])
        link.start()
        await wait_until(lambda: link.stats.connect_failures >= 1)
        assert "failed to prove it knows the cluster secret" in (link.stats.last_error or "")
        assert not link.stats.connected_out
        assert peer.frames == []
    finally:
        await peer.stop()


async def test_a_different_node_at_the_address_is_refused(links: list[PeerLink]) -> None:
    peer = await RecordingPeer(secret=SECRET, node_id=3).start()
    try:
        link = make_link(peer.port)
        links.append(link)
        link.start()
        await wait_until(lambda: link.stats.connect_failures >= 1)
        assert "expected node 2 at this address, but node 3" in (link.stats.last_error or "")
    finally:
        await peer.stop()


async def test_handshake_timeout_on_the_client_side(links: list[PeerLink]) -> None:
    peer = await RecordingPeer(secret=SECRET, mode="silent").start()
    try:
        link = make_link(peer.port)
        links.append(link)
        link.start()
        await wait_until(lambda: link.stats.connect_failures >= 1, within=3)
        assert "timed out" in (link.stats.last_error or "")
    finally:
        await peer.stop()


async def test_http_403_is_explained(links: list[PeerLink]) -> None:
    peer = await RecordingPeer(secret=SECRET, mode="http_403").start()
    try:
        link = make_link(peer.port)
        links.append(link)
        link.start()
        await wait_until(lambda: link.stats.connect_failures >= 1)
        assert "HTTP 403" in (link.stats.last_error or "")
    finally:
        await peer.stop()


async def test_full_queue_drops_the_oldest(peer: RecordingPeer, links: list[PeerLink]) -> None:
    link = make_link(peer.port, LinkOptions(queue_size=10, backoff_min=0.01, backoff_max=0.05))
    links.append(link)
    link.enqueue([accepted(i) for i in range(25)])
    assert link.stats.dropped_overflow == 15
    assert link.queue_length == 10
    link.start()
    await peer.wait_for(lambda: len(peer.messages) == 10)
    assert [m.instance for m in peer.messages] == list(range(15, 25))


async def test_a_message_too_large_to_send_is_dropped_alone(
    peer: RecordingPeer, links: list[PeerLink], caplog: pytest.LogCaptureFixture
) -> None:
    link = make_link(peer.port, LinkOptions(max_frame_size=1024))
    links.append(link)
    big = Forward(group_id=1, src=1, dst=2, commands=(Command("r", "x" * 2000),))
    link.enqueue([accepted(1), big, accepted(2)])
    link.start()
    await peer.wait_for(lambda: len(peer.messages) == 2)
    assert peer.messages == [accepted(1), accepted(2)]
    assert link.stats.dropped_unsendable == 1
    assert "cannot be sent" in caplog.text


async def test_stop_while_connected_closes_the_connection(
    peer: RecordingPeer, links: list[PeerLink]
) -> None:
    link = make_link(peer.port)
    link.start()
    await wait_until(lambda: link.stats.connected_out)
    async with asyncio.timeout(2):
        await link.stop()
    assert not link.running
    assert not link.stats.connected_out
    await peer.wait_for(lambda: peer.closed_codes == [1000])
    await link.stop()  # idempotent


async def test_stop_while_backing_off_is_prompt(links: list[PeerLink]) -> None:
    link = make_link(free_port(), LinkOptions(backoff_min=5, backoff_max=5))
    link.start()
    await wait_until(lambda: link.stats.connect_failures >= 1)
    async with asyncio.timeout(1):
        await link.stop()
    assert not link.running


@pytest.mark.parametrize("told", [True, False], ids=["told", "negative-control"])
async def test_a_peer_that_connects_to_us_is_reconnected_to_at_once(
    links: list[PeerLink], told: bool
) -> None:
    """A restarted node's questions (catch-up, its audit: core/audit.py) are answered over
    the peers' links to it: they must not wait out a backoff of up to ``backoff_max``."""
    port = free_port()
    link = make_link(port, LinkOptions(backoff_min=5, backoff_max=5))
    links.append(link)
    link.start()
    await wait_until(lambda: link.stats.connect_failures >= 1)
    peer = await RecordingPeer(secret=SECRET).start(port)
    try:
        if told:
            link.peer_is_back()  # what the hub does when the peer's own link authenticates
        await asyncio.sleep(1.0)
        assert link.stats.connected_out is told
    finally:
        await peer.stop()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    link = make_link(1, LinkOptions(backoff_min=0.05, backoff_max=2.0))
    for failures, ceiling in [(1, 0.05), (2, 0.1), (3, 0.2), (6, 1.6), (7, 2.0), (50, 2.0)]:
        delays = {link.backoff_delay(failures) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="backoff"):
        LinkOptions(backoff_min=3, backoff_max=1)
    with pytest.raises(ValueError, match="too small"):
        LinkOptions(queue_size=0)


def test_a_handshake_refused_without_a_reason_says_where_to_look() -> None:
    """daphne closes with 4001 and no reason text: the dialling node's log line must still point
    at the likely causes (another secret or node list) and at the peer's log."""
    from websockets.exceptions import ConnectionClosedError
    from websockets.frames import Close

    from consensus.transport.client import _explain

    refused = _explain(ConnectionClosedError(Close(4001, ""), None))
    assert "4001 AUTH_FAILED" in refused and "another secret or node list" in refused
    with_reason = _explain(ConnectionClosedError(Close(4001, "bad MAC"), None))
    assert with_reason.endswith("(4001 AUTH_FAILED: bad MAC)")


def test_a_link_lost_without_a_close_frame_is_not_blamed_on_the_peer() -> None:
    """A keepalive ping timing out on our side read "connection closed by peer (None)"."""
    from websockets.exceptions import ConnectionClosedError

    from consensus.transport.client import _explain

    lost = _explain(ConnectionClosedError(None, None))
    assert lost == "connection lost (the peer stopped answering, or the network failed)"


async def test_a_peer_that_stops_reading_is_given_up_on(links: list[PeerLink]) -> None:
    """Once the socket's buffers are full, the keepalive's ping waits behind the unsent bytes
    and never times out: a link to a stopped process stayed "connected" for good (and a
    reconnect of that peer to us did not replace it)."""
    peer = await RecordingPeer(secret=SECRET, mode="frozen").start()
    link = make_link(peer.port, dataclasses.replace(FAST, send_timeout=0.5))
    links.append(link)
    link.start()
    try:
        await peer.wait_for(lambda: peer.connections == 1)
        big = (Command("r", "x" * 200_000),)
        for instance in range(1, 80):  # 16 MB: more than the socket buffers and write_limit
            link.enqueue(
                [
                    Accept(
                        group_id=1,
                        src=1,
                        dst=2,
                        ballot=B,
                        instance=instance,
                        value=big,
                        chosen_upto=0,
                    )
                ]
            )
            await asyncio.sleep(0)
        await wait_until(lambda: not link.stats.connected_out and link.stats.last_error, 10)
        assert "the peer read nothing for 0.5 s" in str(link.stats.last_error)
        await peer.wait_for(lambda: peer.connections == 2)  # and it tries again
    finally:
        await peer.stop()
