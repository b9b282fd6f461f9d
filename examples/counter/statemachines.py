"""Named counters, replicated by Paxos. Found by ``consensus``'s discovery of ``statemachines.py``.

Command: ``{"name": "visits", "add": 1}`` -> result ``{"name": "visits", "value": 42}``.
"""

from __future__ import annotations

import json
from typing import Any

from consensus.registry import register
from consensus.statemachine import ApplyContext, StateMachine


@register("counter")
class CounterStateMachine(StateMachine):
    # State in memory: the node rebuilds it at start by replaying the group's chosen log.
    durable = False

    def __init__(self, group_id: int) -> None:
        super().__init__(group_id)
        self.counters: dict[str, int] = {}

    def apply(self, command: str, context: ApplyContext) -> Any:
        # Deterministic: no clock, no randomness, no IO. Bad input is a result, not an exception,
        # so every node answers it the same way.
        try:
            data = json.loads(command)
            name, add = data["name"], data.get("add", 0)
        except (ValueError, KeyError, TypeError):
            return {"error": 'send {"name": "<counter>", "add": <int>}'}
        if not isinstance(name, str) or not isinstance(add, int):
            return {"error": "name must be a string and add an integer"}
        self.counters[name] = self.counters.get(name, 0) + add
        return {"name": name, "value": self.counters[name], "instance": context.instance}
