"""``daphne_http.HttpChannel`` in-process (a Twisted ``StringTransport``, a stand-in for
daphne's ``Server``): a request that cannot start cannot hang its connection.

An exception while starting a pipelined request used to leave that request active and never
answered: reading stayed paused (the client's FIN unseen), ``close_if_idle`` took it for a
request being answered, and the error went up through the previous response's ``send()``
into its application (a traceback per connection). The live form of the bug, a non-ASCII
``Daphne-Root-Path`` header, is in test_bad_heads_live.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from consensus.management import daphne_http
from tests.fixtures.daphne_channel import answer, connection
from tests.fixtures.logs import consensus_logs

PIPELINED = (
    b"GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /second HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
)


def test_a_pipelined_request_that_fails_to_start_gets_500_and_the_close(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scope = daphne_http.Exchange._scope

    def failing_scope(exchange: Any) -> Any:
        if exchange.url == b"/second":
            raise RuntimeError("a bug in building the scope")
        return scope(exchange)

    monkeypatch.setattr(daphne_http.Exchange, "_scope", failing_scope)
    channel, transport, server = connection()
    channel.dataReceived(PIPELINED)
    (first,) = server.applications
    with consensus_logs(caplog):
        answer(first)  # the error no longer goes up through this send()
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    second = out[out.index(b"\r\n\r\nok") + 6 :]
    assert second.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), out
    assert b"connection: close\r\n" in second and b"Could not start the request." in second
    assert transport.disconnecting and channel.closed and channel.active is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "could not start a request" in errors[0].getMessage()
    assert "a bug in building the scope" in errors[0].getMessage()


def test_a_request_that_fails_to_start_alone_gets_500_and_the_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing_scope(exchange: Any) -> Any:
        raise RuntimeError("a bug in building the scope")

    monkeypatch.setattr(daphne_http.Exchange, "_scope", failing_scope)
    channel, transport, server = connection()
    channel.dataReceived(PIPELINED)
    assert server.applications == []
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and out.count(b"HTTP/1.1") == 1
    assert transport.disconnecting and channel.closed


@pytest.mark.parametrize("root_path", [b"caf\xc3\xa9", b"/a%ff"], ids=["not-ascii", "not-utf8"])
def test_a_bad_root_path_header_is_a_400_and_the_next_request_is_served(root_path: bytes) -> None:
    channel, transport, server = connection()
    channel.dataReceived(
        b"GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: 127.0.0.1\r\nDaphne-Root-Path: %b\r\n\r\n"
        b"GET /third HTTP/1.1\r\nHost: 127.0.0.1\r\nDaphne-Root-Path: /a%%20b\r\n\r\n" % root_path
    )
    answer(server.applications[0])
    first, third = server.applications  # /second reached no application
    assert (first.url, third.url) == (b"/first", b"/third") and channel.active is third
    out = transport.value()
    assert out.count(b"HTTP/1.1 400 Bad Request\r\n") == 1
    assert b"Invalid Daphne-Root-Path header" in out
    answer(third)
    assert transport.value().endswith(b"ok") and not transport.disconnecting


def test_an_exchange_that_never_reached_an_application_does_not_hold_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However it came to be active without an application, the idle sweep closes it; one
    whose application is working on the answer stays open (daphne's ``http_timeout``)."""
    later = time.monotonic() + daphne_http.IDLE_TIMEOUT + 1
    channel, transport, server = connection()
    channel.dataReceived(PIPELINED)
    channel.close_if_idle(later)
    assert not transport.disconnecting  # /first is with its application

    monkeypatch.setattr(daphne_http.Exchange, "start", lambda exchange: None)
    channel, transport, server = connection()
    channel.dataReceived(PIPELINED)
    assert channel.active is not None and channel.active.body_complete
    channel.close_if_idle(later)
    assert transport.disconnecting
