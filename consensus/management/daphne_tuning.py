"""Per-event costs of daphne's stack (Twisted, autobahn) that buy a node nothing.

py-spy on a 3-node cluster under load (4 groups, client stream) pointed at two of them:

* autobahn formats the arguments of a debug log line on every read and every write of every
  websocket (``hltype(self.dataReceived)``, ``hlval(self.peer)``: ``inspect`` calls and
  ``click.style`` calls) and then drops the line, since its debug level is off: 3.8 µs per
  read or write here, where the patched call costs 0.3 µs. Every peer message crosses autobahn.
* Twisted's asyncio reactor calls every read and write handler through
  ``twisted.python.log.callWithLogger``, which pushes a logging context (a dict copy on a
  thread-local stack) only so that a failure is logged with a "system" prefix: 1.5 µs per event,
  0.15 µs without the context.

Small per event, a few percent of a node's CPU under load (4 groups over the client stream:
1.04× the puts/s and 5% less CPU per put in interleaved A/B runs, within this machine's noise).

``trim()`` replaces both with equivalents that skip the work: autobahn's highlighters become the
identity (a debug line, if someone turns autobahn's debug logging on, shows plain values), and
the reactor's wrapper keeps what matters, a failing handler is logged and never propagates into
the event loop. Each patch applies only if the name it replaces exists, so a daphne, autobahn or
Twisted upgrade that moves them loses the saving, not the node.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

AUTOBAHN_MODULES = ("autobahn.twisted.websocket", "autobahn.websocket.protocol")
HIGHLIGHTERS = ("hltype", "hlval")


def trim() -> list[str]:
    """Apply the patches; return what was patched (for the log and the tests)."""
    patched = []
    for module_name in AUTOBAHN_MODULES:
        module = importlib.import_module(module_name)
        for name in HIGHLIGHTERS:
            if callable(getattr(module, name, None)):
                setattr(module, name, _unhighlighted)
                patched.append(f"{module_name}.{name}")
    reactor_module = importlib.import_module("twisted.internet.asyncioreactor")
    if callable(getattr(reactor_module, "callWithLogger", None)):
        reactor_module.callWithLogger = call_logging_failures
        patched.append("twisted.internet.asyncioreactor.callWithLogger")
    return patched


def _unhighlighted(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


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
