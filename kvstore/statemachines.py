"""The replicated KV store as a state machine (found by ``consensus`` discovery).

Commands are JSON objects. Both the API's form and the seed's ``MsgBean`` form work:
``{"op": "put", "key": "name", "value": "Mike"}`` or ``{"type": "put", "key": ..., "value": ...}``;
ops: ``put``, ``get``, ``delete``, ``cas`` (``expected`` null matches an absent key).
"""

from __future__ import annotations

import json
from typing import Any

from consensus.registry import register
from consensus.statemachine import ApplyContext, StateMachine

from .models import Entry


class CommandError(ValueError):
    pass


def parse_command(command: str) -> dict[str, Any]:
    try:
        data = json.loads(command)
    except ValueError as error:
        raise CommandError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise CommandError("a KV command is a JSON object")
    op = data.get("op", data.get("type"))
    if op not in {"put", "get", "delete", "cas"}:
        raise CommandError(f"unknown op {op!r}: use put, get, delete or cas")
    key = data.get("key")
    if not isinstance(key, str) or not key:
        raise CommandError("key must be a non-empty string")
    data["op"] = op
    return data


@register("kv")
class KVStateMachine(StateMachine):
    durable = True

    def apply(self, command: str, context: ApplyContext) -> Any:
        try:
            data = parse_command(command)
        except CommandError as error:
            return {"error": str(error)}
        op, key = data["op"], data["key"]
        rows = Entry.objects.filter(group_id=self.group_id, key=key)
        if op == "get":
            value = rows.values_list("value", flat=True).first()
            return {"key": key, "value": value, "found": value is not None}
        if op == "delete":
            deleted, _ = rows.delete()
            return {"key": key, "deleted": bool(deleted)}
        value = data.get("value")
        if not isinstance(value, str):
            return {"error": "value must be a string"}
        if op == "cas":
            expected = data.get("expected")
            current = rows.values_list("value", flat=True).first()
            if current != expected:
                return {"key": key, "succeeded": False, "value": current}
        Entry.objects.update_or_create(
            group_id=self.group_id,
            key=key,
            defaults={"value": value, "instance": context.instance},
        )
        if op == "cas":
            return {"key": key, "succeeded": True, "value": value}
        return {"key": key, "value": value}
