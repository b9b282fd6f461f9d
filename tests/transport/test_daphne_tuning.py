"""``consensus.management.daphne_tuning``: the patches apply, and failures are still logged."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from consensus.management.daphne_tuning import SmallFrameMasker, call_logging_failures


class _Selectable:
    def __init__(self, prefix: str = "PeerProtocol,7,127.0.0.1") -> None:
        self.prefix = prefix

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's name
        return self.prefix


def test_every_patch_applies_to_the_installed_versions() -> None:
    """Fails when an upgrade of daphne, autobahn or Twisted moves a patched name (the saving
    would be lost silently). Run in a child: the patches are process-wide."""
    code = (
        "from consensus.management import daphne_tuning\n"
        "print('\\n'.join(daphne_tuning.trim()))\n"
        "import autobahn.twisted.websocket as w, twisted.internet.asyncioreactor as r\n"
        "assert w.hltype(print) is print\n"
        "assert r.callWithLogger is daphne_tuning.call_logging_failures\n"
        "import autobahn.websocket.protocol as p\n"
        "assert type(p.create_xor_masker(b'abcd', 100)) is daphne_tuning.SmallFrameMasker\n"
        "assert type(p.create_xor_masker(b'abcd', 5000)) is not daphne_tuning.SmallFrameMasker\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == [
        "autobahn.twisted.websocket.hltype",
        "autobahn.twisted.websocket.hlval",
        "autobahn.websocket.protocol.create_xor_masker",
        "autobahn.websocket.protocol.hltype",
        "autobahn.websocket.protocol.hlval",
        "twisted.internet.asyncioreactor.callWithLogger",
    ]


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 127, 128, 1023])
@pytest.mark.parametrize("pieces", [1, 2, 7])
def test_small_frames_unmask_as_autobahn_does(size: int, pieces: int) -> None:
    """Byte for byte what autobahn's own masker gives, however the payload is split up."""
    from autobahn.websocket.xormasker import create_xor_masker

    mask, payload = os.urandom(4), os.urandom(size)
    expected = create_xor_masker(mask, size).process(payload)
    masker = SmallFrameMasker(mask)
    cuts = sorted({0, size, *(size * k // pieces for k in range(1, pieces))})
    unmasked = b"".join(masker.process(payload[a:b]) for a, b in itertools.pairwise(cuts))
    assert unmasked == expected
    assert masker.pointer() == size
    masker.reset()
    assert masker.pointer() == 0
    assert masker.process(expected) == payload  # XOR: masking twice gives the payload back


def test_a_handler_result_is_returned() -> None:
    assert call_logging_failures(_Selectable(), lambda a, b: a + b, 2, b=3) == 5


@pytest.fixture
def twisted_errors() -> Iterator[list[dict[str, Any]]]:
    """The error events Twisted's legacy log receives meanwhile (daphne routes them on)."""
    from twisted.python import log

    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("isError"):
            events.append(event)

    log.addObserver(observe)
    try:
        yield events
    finally:
        log.removeObserver(observe)


def test_a_failing_handler_is_logged_with_its_prefix_not_raised(
    twisted_errors: list[dict[str, Any]],
) -> None:
    """The reactor calls read/write handlers through this: an exception must not escape into
    asyncio's loop, and it must be logged as Twisted's own wrapper logs it."""

    def broken() -> None:
        raise ValueError("handler blew up")

    assert call_logging_failures(_Selectable(), broken) is None
    [event] = twisted_errors
    assert event["system"] == "PeerProtocol,7,127.0.0.1"
    assert event["failure"].check(ValueError)


def test_a_broken_log_prefix_does_not_hide_the_failure(
    twisted_errors: list[dict[str, Any]],
) -> None:
    class Broken(_Selectable):
        def logPrefix(self) -> str:  # noqa: N802
            raise RuntimeError("no prefix")

    call_logging_failures(Broken(), lambda: 1 / 0)
    [event] = twisted_errors
    assert event["system"] == "(buggy logPrefix method)"
    assert event["failure"].check(ZeroDivisionError)


def test_keyboard_interrupt_still_stops_the_reactor() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_logging_failures(_Selectable(), interrupted)
