"""Per-event costs of daphne's stack (Twisted, autobahn) that buy a node nothing.

py-spy on a 3-node cluster under load (4 groups, client stream) pointed at three of them:

* autobahn formats the arguments of a debug log line on every read and every write of every
  websocket (``hltype(self.dataReceived)``, ``hlval(self.peer)``: ``inspect`` calls and
  ``click.style`` calls) and then drops the line, since its debug level is off: 3.8 µs per
  read or write here, where the patched call costs 0.3 µs. Every peer message crosses autobahn.
* Twisted's asyncio reactor calls every read and write handler through
  ``twisted.python.log.callWithLogger``, which pushes a logging context (a dict copy on a
  thread-local stack) only so that a failure is logged with a "system" prefix: 1.5 µs per event,
  0.15 µs without the context.
* autobahn unmasks every frame a client sends (the peer links' frames: the connecting node is
  the websocket client) with a masker object made per frame through CFFI (native buffers, a
  finalizer), 2.2 µs for a 200-byte frame; one big-integer XOR does it in 1.0 µs. Above
  1 KiB the native masker is faster and keeps the job.

Small per event, a few percent of a node's CPU under load (the first two, 4 groups over the
client stream: 1.04× the puts/s and 5% less CPU per put in interleaved A/B runs, within this
machine's noise; the masker came in with the threads' scheduling policy, see the README).

``trim()`` replaces them with equivalents that skip the work: autobahn's highlighters become the
identity (a debug line, if someone turns autobahn's debug logging on, shows plain values), the
reactor's wrapper keeps what matters, a failing handler is logged and never propagates into
the event loop, and the small-frame masker gives autobahn's bytes exactly (the tests compare).
Each patch applies only if the name it replaces exists, so a daphne, autobahn or Twisted upgrade
that moves them loses the saving, not the node.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

AUTOBAHN_MODULES = ("autobahn.twisted.websocket", "autobahn.websocket.protocol")
HIGHLIGHTERS = ("hltype", "hlval")
MASKER_MODULE = "autobahn.websocket.protocol"
SMALL_FRAME_BYTES = 1024
"""Below this, ``SmallFrameMasker`` unmasks faster than autobahn's native masker."""


def trim() -> list[str]:
    """Apply the patches; return what was patched (for the log and the tests)."""
    patched = []
    for module_name in AUTOBAHN_MODULES:
        module = importlib.import_module(module_name)
        for name in HIGHLIGHTERS:
            if callable(getattr(module, name, None)):
                setattr(module, name, _unhighlighted)
                patched.append(f"{module_name}.{name}")
    protocol_module = importlib.import_module(MASKER_MODULE)
    native = getattr(protocol_module, "create_xor_masker", None)
    if callable(native):
        protocol_module.create_xor_masker = _masker_preferring_small(native)
        patched.append(f"{MASKER_MODULE}.create_xor_masker")
    reactor_module = importlib.import_module("twisted.internet.asyncioreactor")
    if callable(getattr(reactor_module, "callWithLogger", None)):
        reactor_module.callWithLogger = call_logging_failures
        patched.append("twisted.internet.asyncioreactor.callWithLogger")
    return patched


def _unhighlighted(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


class SmallFrameMasker:
    """autobahn's masker interface (``process``, ``pointer``, ``reset``) as one XOR of two big
    integers per call; ``process`` may get a frame's payload in several pieces."""

    __slots__ = ("_mask", "_pointer")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._pointer = 0

    def pointer(self) -> int:
        return self._pointer

    def reset(self) -> None:
        self._pointer = 0

    def process(self, data: bytes) -> bytes:
        size = len(data)
        shift = self._pointer & 3
        key = (self._mask[shift:] + self._mask[:shift]) * (size // 4 + 1)
        self._pointer += size
        masked = int.from_bytes(data, "little") ^ int.from_bytes(key[:size], "little")
        return masked.to_bytes(size, "little")


def _masker_preferring_small(native: Callable[..., Any]) -> Callable[..., Any]:
    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        if length is not None and length < SMALL_FRAME_BYTES:
            return SmallFrameMasker(mask)
        return native(mask, length)

    return create_xor_masker


def call_logging_failures(logger: Any, func: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``twisted.python.log.callWithLogger`` without the logging context: call ``func``; if it
    fails, log the failure (with the same "system" prefix) instead of raising."""
    try:
        return func(*args, **kw)
    except KeyboardInterrupt:
        raise
    except BaseException:
        from twisted.python import log

        try:
            prefix = logger.logPrefix()
        except Exception:  # noqa: BLE001 - as Twisted: a broken logPrefix must not hide the error
            prefix = "(buggy logPrefix method)"
        log.err(system=prefix)
        return None
