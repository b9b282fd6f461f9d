"""The replicated KV store as a state machine (found by ``consensus`` discovery).

Commands are JSON objects. Both the API's form and the seed's ``MsgBean`` form work:
``{"op": "put", "key": "name", "value": "Mike"}`` or ``{"type": "put", "key": ..., "value": ...}``;
ops: ``put``, ``get``, ``delete``, ``cas`` (``expected`` null matches an absent key).

Validation here must be deterministic (every node decides the same) and must catch everything the
database would refuse: a command that made the apply transaction fail would fail identically on
every node and stop the group. So limits are constants of the model, never settings (which may
differ between nodes), and text the databases cannot store (NUL characters, lone surrogates) is
rejected as a result ``{"error": ...}`` like any other bad command.
"""

from __future__ import annotations

import json
from typing import Any

from consensus.registry import register
from consensus.statemachine import ApplyContext, StateMachine

from .models import Entry


MAX_KEY_CHARS: int = Entry._meta.get_field("key").max_length or 1024


class CommandError(ValueError):
    pass


def check_text(value: Any, field: str) -> str:
    """A string both SQLite and PostgreSQL can store."""
    if not isinstance(value, str):
        raise CommandError(f"{field} must be a string")
    if "\x00" in value:
        raise CommandError(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(f"{field} is not valid unicode (lone surrogate)") from None
    return value


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
    check_text(key, "key")
    if len(key) > MAX_KEY_CHARS:
        raise CommandError(f"key must be at most {MAX_KEY_CHARS} characters")
    if op in {"put", "cas"}:
        check_text(data.get("value"), "value")
    if op == "cas" and data.get("expected") is not None:
        check_text(data["expected"], "expected")
    data["op"] = op
    return data


@register("kv")
class KVStateMachine(StateMachine):
    """One ``Entry`` row per (group, key); ``apply`` runs inside the runtime's transaction that
    also records the applied index, so the store and the index never disagree after a crash."""

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
        value = data["value"]
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
