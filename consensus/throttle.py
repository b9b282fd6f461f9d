"""``LogThrottle``: say a repeated problem once in a while, not every time it happens.

A misconfigured peer retries its link every couple of seconds and sends heartbeats every few
ticks; one log line a minute about it says as much as thirty. Keys may come from outside (a
refused peer's frame text), so at most ``max_keys`` recent ones are remembered: beyond that a
key is reported every time rather than forgotten silently.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator


class LogThrottle:
    def __init__(self, interval: float, max_keys: int = 1000) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._said: dict[Hashable, float] = {}  # key -> when it was last said

    def first(self, key: Hashable, now: float | None = None) -> bool:
        """Whether to say ``key`` now: it was not said in the last ``interval`` seconds."""
        now = time.monotonic() if now is None else now
        last = self._said.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._said) >= self.max_keys:
            self._said = {k: t for k, t in self._said.items() if now - t < self.interval}
        if len(self._said) < self.max_keys:
            self._said[key] = now
        return True

    def __len__(self) -> int:
        return len(self._said)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._said)
