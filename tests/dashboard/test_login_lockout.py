"""The admin login's lockout (django-axes, ``AXES_*`` in the settings): after
``PAXOS_ADMIN_LOGIN_FAILURES`` (5) failed logins for one username from one address, that username
gets 429 from that address for ``PAXOS_ADMIN_LOCKOUT_MINUTES`` (15), even with the right password.
The counts live in the process's local-memory cache, so each test starts from an empty one."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.cache.backends import locmem
from django.db import connections
from django.test import AsyncClient, Client

from tests.fixtures.procs import assert_one_line, manage

LOGIN = "/admin/login/"
PASSWORD = "right-" + uuid.uuid4().hex[:8]
LIMIT = 5
LOCKED = "locked out for up to 15 minutes"


@pytest.fixture(autouse=True)
def no_counts() -> Iterator[None]:
    cache = caches[settings.AXES_CACHE]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def users(db: Any) -> None:
    for username in ("admin", "other"):
        get_user_model().objects.create_superuser(username, password=PASSWORD)


@pytest.fixture
def axes_log() -> Iterator[io.StringIO]:
    """What axes writes to the node's log: the configured handler's output, filter included."""
    (handler,) = logging.getLogger("axes").handlers
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def log_in(
    username: str, password: str, address: str = "127.0.0.1", forwarded_for: str | None = None
) -> Any:
    """One login attempt with a fresh client (no session): 302 logged in, 200 refused (the form
    again), 429 locked out."""
    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    return Client(REMOTE_ADDR=address, **headers).post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}
    )


def fail(
    times: int,
    username: str = "admin",
    address: str = "127.0.0.1",
    forwarded_for: str | None = None,
) -> None:
    for _ in range(times):
        assert log_in(username, "wrong", address, forwarded_for).status_code == 200


def assert_locked(response: Any) -> None:
    assert response.status_code == 429
    assert LOCKED in response.content.decode()


def lock_out() -> None:
    """``admin`` from 127.0.0.1: the failed login that reaches the limit gets the lockout."""
    fail(LIMIT - 1)
    assert_locked(log_in("admin", "wrong"))


def test_the_limit_of_failed_logins_locks_the_username_out(
    users: None, axes_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    lock_out()
    assert_locked(log_in("admin", PASSWORD))
    assert_locked(log_in("admin", "wrong"))
    # One line for the lockout; none for the failures before it or the attempts after it.
    (line,) = axes_log.getvalue().splitlines()
    assert "WARNING axes." in line and "Locking out" in line
    assert "username='admin' address='127.0.0.1'" in line
    assert "Too Many Requests" not in caplog.text


def test_a_username_cannot_write_lines_into_the_log(axes_log: io.StringIO, db: Any) -> None:
    """A username is the client's text: its newline stays escaped in the one lockout line."""
    forged = "x\n2026-12-07 08:00:00,000 ERROR consensus.runtime: forged"
    fail(LIMIT - 1, forged)
    assert_locked(log_in(forged, "wrong"))
    (line,) = axes_log.getvalue().splitlines()
    assert "username='x\\n2026-12-07" in line


def test_a_lockout_is_for_that_username_from_that_address(users: None) -> None:
    lock_out()
    assert log_in("other", PASSWORD).status_code == 302
    assert log_in("admin", PASSWORD, address="10.0.0.7").status_code == 302
    assert_locked(log_in("admin", PASSWORD))


PROXY = "10.0.0.2"


@pytest.fixture
def behind_a_proxy(settings: Any) -> None:
    from consensus.proxies import parse_trusted_proxies

    settings.PAXOS_TRUSTED_PROXIES = parse_trusted_proxies(f"{PROXY},192.168.7.0/24")


def test_behind_a_trusted_proxy_the_lockout_is_the_forwarded_clients(
    users: None, behind_a_proxy: None
) -> None:
    """Every browser reaches the node from the proxy's address: counted under it, one client's
    failures would lock ``admin`` out for everyone."""
    fail(LIMIT - 1, address=PROXY, forwarded_for="203.0.113.9")
    assert_locked(log_in("admin", "wrong", PROXY, forwarded_for="203.0.113.9"))
    assert log_in("admin", PASSWORD, PROXY, forwarded_for="198.51.100.4").status_code == 302
    # The left-most hops are the client's own text; the proxies' appended hop decides.
    spoofed = "198.51.100.4, 203.0.113.9, 192.168.7.5"
    assert_locked(log_in("admin", PASSWORD, PROXY, forwarded_for=spoofed))


def test_a_forwarded_for_header_from_an_untrusted_address_is_ignored(
    users: None, behind_a_proxy: None
) -> None:
    fail(LIMIT - 1, address="10.9.9.9", forwarded_for="203.0.113.1")
    assert_locked(log_in("admin", "wrong", "10.9.9.9", forwarded_for="203.0.113.2"))


@pytest.mark.parametrize(
    ("remote", "forwarded_for", "client"),
    [
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "203.0.113.9, 192.168.7.1", "203.0.113.9"),  # through two proxies
        ("10.0.0.2", "192.168.7.1", "192.168.7.1"),  # only proxies: the farthest one
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "garbage, 203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "203.0.113.9, garbage", "10.0.0.2"),
        ("10.0.0.3", "203.0.113.9", "10.0.0.3"),  # not a proxy
        ("::1", "203.0.113.9", "::1"),
        ("10.0.0.2", "203.0.113.9:5678", "203.0.113.9"),  # a port after it (IIS, Azure)
        ("10.0.0.2", "[2001:db8::1]:443, 192.168.7.1", "2001:db8::1"),
        ("::ffff:10.0.0.2", "203.0.113.9", "203.0.113.9"),  # a dual-stack listener's peer
        ("10.0.0.2", "::ffff:203.0.113.9", "203.0.113.9"),
    ],
)
def test_the_client_address_through_trusted_proxies(
    remote: str, forwarded_for: str, client: str, behind_a_proxy: None
) -> None:
    from consensus.proxies import client_address

    request = SimpleNamespace(META={"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded_for})
    assert client_address(request) == client


def test_without_trusted_proxies_the_header_is_ignored(users: None) -> None:
    fail(LIMIT - 1, forwarded_for="203.0.113.1")
    assert_locked(log_in("admin", "wrong", forwarded_for="203.0.113.2"))


def test_a_lockout_ends_after_the_cool_off(users: None, monkeypatch: pytest.MonkeyPatch) -> None:
    lock_out()

    def minutes_later(minutes: float) -> None:
        later = time.time() + minutes * 60
        monkeypatch.setattr(locmem, "time", SimpleNamespace(time=lambda: later))

    minutes_later(14)
    assert_locked(log_in("admin", PASSWORD))
    minutes_later(16)
    assert log_in("admin", PASSWORD).status_code == 302


def test_a_successful_login_resets_the_count(users: None) -> None:
    fail(LIMIT - 1)
    assert log_in("admin", PASSWORD).status_code == 302
    lock_out()  # the full limit again, not just one more failure


@pytest.mark.django_db(transaction=True)
async def test_a_node_serving_asgi_locks_out_too() -> None:
    """A node runs Django under ASGI, where axes' middleware takes its async path."""
    await get_user_model().objects.acreate_superuser("admin", password=PASSWORD)
    client = AsyncClient()
    form = {"username": "admin", "password": "wrong"}
    try:
        for _ in range(LIMIT - 1):
            assert (await client.post(LOGIN, form)).status_code == 200
        assert_locked(await client.post(LOGIN, form))
        assert_locked(await client.post(LOGIN, form | {"password": PASSWORD}))
    finally:
        # The login view ran on asgiref's shared thread, whose connection is persistent: close it
        # as tests/fixtures/loop_node.py does, or a later test without database access trips on it.
        await sync_to_async(connections.close_all)()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("PAXOS_ADMIN_LOGIN_FAILURES=five", "PAXOS_ADMIN_LOGIN_FAILURES='five' is not an integer"),
        ("PAXOS_ADMIN_LOGIN_FAILURES=0", "PAXOS_ADMIN_LOGIN_FAILURES=0 is not a number of failed"),
        ("PAXOS_ADMIN_LOCKOUT_MINUTES=-1", "PAXOS_ADMIN_LOCKOUT_MINUTES=-1 is not a number of min"),
        ("PAXOS_ADMIN_LOCKOUT_MINUTES=0.5", "PAXOS_ADMIN_LOCKOUT_MINUTES='0.5' is not an integer"),
        ("PAXOS_ADMIN_LOCKOUT_MINUTES=10000000000000", "from 1 to 1000000 (the default is 15)"),
        ("PAXOS_TRUSTED_PROXIES=10.0.0.1,proxy.example", "'proxy.example' is not an IP address"),
    ],
)
def test_a_lockout_setting_out_of_range_is_refused(setting: str, problem: str) -> None:
    name, value = setting.split("=")
    assert_one_line(manage("check", **{name: value}), problem)
