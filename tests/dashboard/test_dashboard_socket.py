"""The dashboard websocket's guards (a review): its origin must be its own page's, its session is
read again while it is open, and a consumer that ends in any way leaves the feed."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

from consensus.dashboard import consumers
from consensus.dashboard.consumers import DashboardConsumer
from consensus.dashboard.feed import GROUP_NAME
from consensus.dashboard.origin import SameOrigin
from consensus.dashboard.snapshot import snapshot_frame

pytestmark = pytest.mark.django_db(transaction=True)  # channels' consumers close old connections

HOST = (b"host", b"127.0.0.1:8001")


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A websocket application that accepts and stays."""
    await receive()
    await send({"type": "websocket.accept"})


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (b"http://127.0.0.1:8001", True),
        (b"http://127.0.0.1:3000", False),  # another application on the same host
        (b"https://127.0.0.1:8001", True),  # the scheme is the proxy's business
        (b"http://evil.example", False),
        (b"null", False),
        (None, False),
        (b"https://paxos1.example.com", True),  # a TLS proxy named in CSRF_TRUSTED_ORIGINS
    ],
)
async def test_only_the_pages_own_origin_opens_the_socket(
    origin: bytes | None, allowed: bool, settings: Any
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://paxos1.example.com"]
    headers = [HOST] + ([(b"origin", origin)] if origin is not None else [])
    communicator = WebsocketCommunicator(SameOrigin(echo), "/ws/dashboard/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected is allowed
    await communicator.disconnect()


def test_a_default_port_in_the_host_is_the_same_origin() -> None:
    from consensus.dashboard.origin import _same_origin

    assert _same_origin("http://example.com", "example.com:80")
    assert _same_origin("https://example.com:443", "example.com")
    assert not _same_origin("http://example.com:8080", "example.com")


@pytest.fixture
def feed(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    stand_in = SimpleNamespace(subscribers=0)
    monkeypatch.setattr(consumers, "get_feed", lambda: stand_in)
    return stand_in


def staff_session(user: Any) -> Any:
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session


def connected_as(user: Any, session: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"], communicator.scope["session"] = user, session
    return communicator


@pytest.mark.parametrize("revoked", ["logged out", "not staff", "inactive", "new password"])
async def test_an_open_dashboard_closes_once_its_session_is_no_longer_staffs(
    revoked: str, feed: SimpleNamespace, django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await django_user_model.objects.acreate(username="ops", is_staff=True)
    user.set_password("first")
    await user.asave()
    session = await staff_session_async(user)
    communicator = connected_as(user, session)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()  # the first snapshot (or "unavailable")
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.0)
    await broadcast()
    assert (await communicator.receive_json_from())["snapshot"] == {"node_id": 1}  # still staff
    if revoked == "logged out":
        await session.adelete()
    elif revoked == "new password":
        user.set_password("second")
        await user.asave()
    else:
        setattr(user, "is_staff" if revoked == "not staff" else "is_active", False)
        await user.asave()
    await broadcast()
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4403}
    assert feed.subscribers == 0
    await communicator.wait()


async def staff_session_async(user: Any) -> Any:
    from asgiref.sync import sync_to_async

    return await sync_to_async(staff_session)(user)


async def broadcast() -> None:
    await get_channel_layer().group_send(
        GROUP_NAME, {"type": "dashboard.snapshot", "frame": snapshot_frame({"node_id": 1})}
    )


async def test_garbage_frames_are_ignored_and_the_socket_goes_on(feed: SimpleNamespace) -> None:
    user = SimpleNamespace(is_active=True, is_staff=True, get_username=lambda: "admin")
    communicator = connected_as(user, None)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    assert feed.subscribers == 1
    await communicator.send_to(text_data="{not json")
    await communicator.send_to(bytes_data=b"\x00\x01")
    await communicator.send_to(text_data='"refresh"')
    await broadcast()
    assert (await communicator.receive_json_from())["snapshot"] == {"node_id": 1}
    await communicator.disconnect()
    assert feed.subscribers == 0


async def test_a_consumer_that_fails_leaves_the_feed(
    feed: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(self: DashboardConsumer, event: dict[str, Any]) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(DashboardConsumer, "dashboard_snapshot", failing)
    user = SimpleNamespace(is_active=True, is_staff=True, get_username=lambda: "admin")
    communicator = connected_as(user, None)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    await broadcast()
    with pytest.raises(RuntimeError):
        await communicator.wait()
    assert feed.subscribers == 0, "the feed would build snapshots for it for good"


async def test_the_dashboard_route_refuses_another_port_of_its_host() -> None:
    """Through the project's websocket routes, as a browser on 127.0.0.1:3000 would connect."""
    from paxos_site.asgi import application

    for origin, allowed in ((b"http://127.0.0.1:3000", False), (b"http://127.0.0.1:8001", True)):
        communicator = WebsocketCommunicator(
            application, "/ws/dashboard/", headers=[HOST, (b"origin", origin)]
        )
        connected, code = await communicator.connect()
        # the page's own origin reaches the consumer, which refuses the anonymous user (4403);
        # another is refused before it (channels' denier)
        assert not connected and (code == 4403) is allowed, (origin, code)
        await communicator.disconnect()


async def test_a_browser_that_does_not_read_skips_broadcasts(
    feed: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsent = [0]
    monkeypatch.setattr(consumers.ws_limits, "unsent_bytes", lambda scope: unsent[0])
    user = SimpleNamespace(is_active=True, is_staff=True, get_username=lambda: "admin")
    communicator = connected_as(user, None)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    unsent[0] = consumers.MAX_UNSENT_BYTES + 1  # a stalled tab
    await broadcast()
    assert await communicator.receive_nothing(timeout=0.2)
    unsent[0] = 0  # it took them
    await broadcast()
    assert (await communicator.receive_json_from())["snapshot"] == {"node_id": 1}
    await communicator.disconnect()


async def test_the_feed_encodes_a_broadcast_once_for_every_browser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The channel layer carries the encoded frame: a dict would be deep-copied per subscriber
    and encoded again by each consumer, on the node's event loop."""
    import asyncio

    from consensus.dashboard import feed as feed_module
    from consensus.dashboard import snapshot as snapshot_module

    sent: list[dict[str, Any]] = []

    class Layer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append(message)
            raise asyncio.CancelledError  # one broadcast is enough

    async def build(node: Any, feed: Any) -> dict[str, Any]:
        return {"node_id": 7}

    monkeypatch.setattr(feed_module, "get_channel_layer", Layer)
    monkeypatch.setattr(feed_module, "node_started", lambda node: True)
    monkeypatch.setattr(snapshot_module, "build_snapshot", build)
    feed = feed_module.DashboardFeed()
    feed.subscribers = 2
    monkeypatch.setattr(feed, "watch", lambda node: None)
    feed._changed.set()
    with pytest.raises(asyncio.CancelledError):
        await feed.run(SimpleNamespace(applied={}))
    assert sent == [{"type": "dashboard.snapshot", "frame": snapshot_frame({"node_id": 7})}]
