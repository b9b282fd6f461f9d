"""PeerTransport: routing by dst, the install seam, status, threads, and two transports talking."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from consensus.core.ballot import Ballot
from consensus.core.errors import LocalProtocolError
from consensus.core.messages import Accepted, Message
from consensus.transport import (
    LinkOptions,
    PeerAddress,
    PeerTransport,
    daphne_options,
    get_transport,
    hub,
    install,
    uninstall,
)

from .fakes import RecordingPeer

B = Ballot(1, 1)
NODES = [PeerAddress(1, "127.0.0.1", 1), PeerAddress(2, "127.0.0.1", 2), PeerAddress(3, "h", 3)]


def msg(dst: int, instance: int = 1, src: int = 1) -> Accepted:
    return Accepted(group_id=1, src=src, dst=dst, ballot=B, instance=instance)


def make(
    nodes: list[PeerAddress] = NODES, on_messages: object = None, **kwargs: object
) -> PeerTransport:
    return PeerTransport(
        node_id=1,
        nodes=nodes,
        secret="secret",
        on_messages=on_messages or (lambda src, messages: None),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def clean_install() -> Iterator[None]:
    uninstall()
    yield
    uninstall()


def test_send_routes_each_message_to_its_peer_queue() -> None:
    transport = make()
    transport.send([msg(2, 1), msg(3, 2), msg(2, 3)])
    assert list(transport._links[2]._queue) == [msg(2, 1), msg(2, 3)]
    assert list(transport._links[3]._queue) == [msg(3, 2)]
    assert transport.peer_stats(2).queue_length == 2


def test_messages_for_unknown_nodes_or_this_node_are_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = make()
    transport.send([msg(9), msg(1), msg(2)])
    assert transport.unroutable == 2
    assert transport.peer_stats(2).queue_length == 1
    assert "not a cluster member" in caplog.text
    assert "this node" in caplog.text


def test_overflow_is_counted_per_peer() -> None:
    transport = make(options=LinkOptions(queue_size=3))
    transport.send([msg(2, i) for i in range(5)])
    assert transport.peer_stats(2).dropped_overflow == 2
    assert [m.instance for m in transport._links[2]._queue] == [2, 3, 4]


def test_status_is_json_ready() -> None:
    transport = make()
    status = transport.status()
    json.dumps(status)
    assert status["node_id"] == 1
    assert [peer["node_id"] for peer in status["peers"]] == [2, 3]  # type: ignore[index]
    assert status["peers"][0]["connected_out"] is False  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nodes": [PeerAddress(2, "h", 2)]}, "not in the cluster"),
        ({"nodes": [*NODES, PeerAddress(2, "x", 9)]}, "listed twice"),
    ],
)
def test_constructor_validates_the_cluster(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        make(**kwargs)  # type: ignore[arg-type]


def test_empty_secret_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="secret"):
        PeerTransport(node_id=1, nodes=NODES, secret="", on_messages=lambda s, m: None)


def test_install_seam(clean_install: None) -> None:
    first, second = make(), make()
    assert get_transport() is None
    install(first)
    install(first)  # idempotent
    assert get_transport() is first
    with pytest.raises(LocalProtocolError, match="already installed"):
        install(second)
    uninstall(second)  # not the installed one: no effect
    assert get_transport() is first
    uninstall(first)
    assert get_transport() is None


def test_deliver_counts_and_survives_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    def explode(src: int, messages: list[Message]) -> None:
        raise RuntimeError("boom")

    transport = make(on_messages=explode)
    transport.deliver(2, [msg(1, src=2)], frame_bytes=12)
    assert "inbound callback failed" in caplog.text
    stats = transport.peer_stats(2)
    assert (stats.frames_received, stats.messages_received, stats.bytes_received) == (1, 1, 12)


def test_a_peers_frames_waiting_for_the_runtime_are_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once ``inbound_bytes`` of a peer's frames wait for the runtime, its further frames are
    dropped and counted until the runtime takes its inbox; the other peers' frames go on."""
    delivered: list[tuple[int, list[Message]]] = []
    transport = make(
        on_messages=lambda src, messages: delivered.append((src, messages)),
        options=LinkOptions(inbound_bytes=250),
    )
    for instance in range(5):  # 100 bytes each: the third takes node 2 past the bound
        transport.deliver(2, [msg(1, instance, src=2)], frame_bytes=100)
    transport.deliver(3, [msg(1, 9, src=3), msg(1, 10, src=3)], frame_bytes=100)
    assert [(src, m.instance) for src, batch in delivered for m in batch] == [
        (2, 0),
        (2, 1),
        (2, 2),
        (3, 9),
        (3, 10),
    ]
    stats = transport.peer_stats(2)
    assert (stats.frames_received, stats.dropped_inbound) == (5, 2)
    assert "300 bytes of its frames wait for this node's next turn (limit 250)" in str(
        stats.last_error
    )
    assert transport.peer_stats(3).dropped_inbound == 0
    warnings = [r for r in caplog.records if "wait for this node's next turn" in r.getMessage()]
    assert len(warnings) == 1  # once a minute per peer, not once per frame

    transport.inbound_taken()  # a turn took the inbox
    transport.deliver(2, [msg(1, 7, src=2)], frame_bytes=10_000)  # a frame gets through alone
    transport.deliver(2, [msg(1, 8, src=2)], frame_bytes=1)
    assert [m.instance for _, batch in delivered[4:] for m in batch] == [7]
    assert transport.peer_stats(2).dropped_inbound == 3


def test_without_inbound_bytes_nothing_is_dropped() -> None:
    delivered: list[Message] = []
    transport = make(on_messages=lambda src, messages: delivered.extend(messages))
    for instance in range(100):
        transport.deliver(2, [msg(1, instance, src=2)], frame_bytes=1024 * 1024)
    assert len(delivered) == 100
    with pytest.raises(ValueError, match="inbound_bytes"):
        LinkOptions(inbound_bytes=0)


def test_daphne_options_match_the_frame_size() -> None:
    options = daphne_options(4 * 1024 * 1024)
    assert options["websocket_max_message_size"] == 4 * 1024 * 1024
    assert options["websocket_max_frame_size"] == 4 * 1024 * 1024


@pytest.fixture
async def peer2() -> AsyncIterator[RecordingPeer]:
    server = await RecordingPeer(node_id=2, secret=b"secret", members=(1, 2)).start()
    yield server
    await server.stop()


async def test_start_send_stop(peer2: RecordingPeer) -> None:
    nodes = [NODES[0], PeerAddress(2, "127.0.0.1", peer2.port)]
    transport = make(nodes, options=LinkOptions(backoff_min=0.01, backoff_max=0.05))
    await transport.start()
    try:
        transport.send([msg(2, i) for i in range(10)])
        await peer2.wait_for(lambda: len(peer2.messages) == 10)
        assert transport.status()["running"] is True
    finally:
        await transport.stop()
    assert transport.status()["running"] is False
    transport.send([msg(2, 99)])  # ignored after stop
    with pytest.raises(LocalProtocolError, match="cannot be restarted"):
        await transport.start()


async def test_send_from_another_thread_hops_onto_the_loop(peer2: RecordingPeer) -> None:
    nodes = [NODES[0], PeerAddress(2, "127.0.0.1", peer2.port)]
    transport = make(nodes, options=LinkOptions(backoff_min=0.01, backoff_max=0.05))
    await transport.start()
    try:
        thread = threading.Thread(target=transport.send, args=([msg(2, 1), msg(2, 2)],))
        thread.start()
        await asyncio.to_thread(thread.join)
        await peer2.wait_for(lambda: len(peer2.messages) == 2)
    finally:
        await transport.stop()


async def test_an_inbound_link_tells_the_outbound_link_to_that_peer() -> None:
    """The peer is up (it has just connected to us): the link to it stops backing off."""
    transport = make()
    told: list[int] = []
    for node_id, link in transport._links.items():
        link.peer_is_back = lambda node_id=node_id: told.append(node_id)  # type: ignore[method-assign]
    token = transport.inbound_opened(3, close=lambda code, reason: None)  # type: ignore[arg-type]
    assert told == [3]
    transport.inbound_closed(token)


def test_a_refusal_is_reported_once_a_minute() -> None:
    """A misconfigured peer retries every couple of seconds; its refusal is logged once a
    minute (the consumer logs repeats at DEBUG)."""
    transport = make(NODES)
    assert transport.first_report("node 3's config lists ...", now=100.0)
    assert not transport.first_report("node 3's config lists ...", now=159.0)
    assert transport.first_report("bad MAC from node 2", now=159.0)  # another problem
    assert transport.first_report("node 3's config lists ...", now=160.5)


def test_the_reported_problems_are_bounded() -> None:
    """Anyone can connect and make up a problem (a bad frame's text): the memory of recent ones
    is bounded, and a problem it could not remember is reported, not hidden."""
    transport = make(NODES)
    for n in range(hub.MAX_REPORTED):
        assert transport.first_report(f"made-up problem {n}", now=0.0)
    assert transport.first_report("one too many", now=1.0)
    assert transport.first_report("one too many", now=2.0)  # not remembered: reported again
    assert len(transport._reports) == hub.MAX_REPORTED
    assert transport.first_report("later", now=61.0)  # the stale ones make room
    assert not transport.first_report("later", now=62.0)
    assert len(transport._reports) == 1
    assert transport.first_report("x" * 5000, now=63.0)
    assert max(len(str(key)) for key in transport._reports) <= hub.MAX_REPORT_KEY


def test_a_transport_whose_group_list_is_too_long_for_earlier_releases_sends_none() -> None:
    assert make(groups=[(1, "kv")]).groups == ((1, "kv"),)
    many = [(g, "a-state-machine-name") for g in range(1, 1001)]
    assert make(groups=many).groups is None  # logged; the node still starts
