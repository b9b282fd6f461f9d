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

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from consensus.registry import register
from consensus.statemachine import (
    ApplyContext,
    QueryError,
    StateMachine,
    raw_cursor,
    rows_digest,
)

from .models import Entry

MAX_KEY_CHARS: int = Entry._meta.get_field("key").max_length or 1024
BATCH_QUERY_KEYS = 500
"""Keys per ``IN (...)`` query or insert statement (well under SQLite's variable limit)."""


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


MAX_FALLBACK_DEPTH = 512
"""How deep ``json`` may nest what orjson (whose own limit is 1024) refused: ``json`` recurses,
and where it hits Python's recursion limit depends on the caller's stack (a node's loop or its
writer thread), so a command could parse on one and not on the other."""


def load_command(command: str) -> Any:
    """The command's JSON (``CommandError`` if it is not JSON), as ``apply`` reads it: the same
    answer on every node and every thread."""
    try:
        return orjson.loads(command)  # every command on every node: the fast parser first
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):  # nested deeper than orjson's 1024: json cannot either
            raise CommandError(f"not JSON: {error}") from None
    # what orjson refuses but json takes (lone surrogates, NaN, huge integers)
    if _nesting_depth(command) > MAX_FALLBACK_DEPTH:
        raise CommandError(f"not JSON: nested more than {MAX_FALLBACK_DEPTH} deep")
    try:
        return json.loads(command)
    except ValueError as error:
        raise CommandError(f"not JSON: {error}") from None


def _nesting_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings (only for the rare fallback parse)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_command(command: str) -> dict[str, Any]:
    data = load_command(command)
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


@functools.cache
def _api_check() -> Callable[[str], None]:
    """The API's ``check_command``, imported on first use: the API layer imports this module,
    and applying commands needs none of it (an import statement per command cost 1.3 µs)."""
    from .api.views import check_command

    return check_command


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

    def validate(self, text: str) -> None:
        """The REST routes' limits (key and value sizes, no '/' in a key) on a command or query
        that arrives as text: ``ApiError`` with the routes' status and words."""
        _api_check()(text)

    def query(self, queries: Sequence[str]) -> list[Any]:
        """``{"op": "get", "key": ...}`` -> ``{"key", "value", "found", "instance"}`` (the same
        shape as a ``get`` command's result, plus the instance that wrote the value)."""
        keys: list[str | None] = []
        for query in queries:
            try:
                data = parse_command(query)
            except CommandError as error:
                raise QueryError(str(error)) from None
            if data["op"] != "get":
                raise QueryError(f"only get is a query, not {data['op']!r}")
            keys.append(data["key"])
        found = {key: (value, instance) for key, value, instance in self._read(set(keys))}
        results = []
        for key in keys:
            value, instance = found.get(key, (None, None))
            results.append(
                {"key": key, "value": value, "found": value is not None, "instance": instance}
            )
        return results

    def state_digest(self) -> str:
        """The group's keys and values, in any order (``rows_digest``)."""
        table = Entry._meta.db_table
        with raw_cursor() as cursor:
            cursor.execute(
                f'SELECT "key", "value" FROM {table} WHERE group_id = %s', [self.group_id]
            )
            return rows_digest(_fetched(cursor))

    def _read(self, keys: set[str]) -> list[tuple[str, str, int]]:
        """(key, value, instance) of those ``keys`` that exist, with raw SQL (it runs on every
        commit) and a bounded number of parameters per statement."""
        ordered = sorted(keys)
        table = Entry._meta.db_table
        rows: list[tuple[str, str, int]] = []
        with raw_cursor() as cursor:
            for start in range(0, len(ordered), BATCH_QUERY_KEYS):
                chunk = ordered[start : start + BATCH_QUERY_KEYS]
                cursor.execute(
                    f'SELECT "key", "value", instance FROM {table} WHERE group_id = %s '
                    f'AND "key" IN ({", ".join(["%s"] * len(chunk))})',
                    [self.group_id, *chunk],
                )
                rows.extend(cursor.fetchall())
        return rows

    def apply_batch(self, commands: Sequence[tuple[str, ApplyContext]]) -> list[Any]:
        """Same results as ``apply`` one after another, with one read and two writes per batch.

        The runtime hands over every command of the instances it applies in one transaction, so
        under load this turns hundreds of single-row queries into a handful: read the touched
        keys, run the commands against that in-memory view in order, then upsert what was
        written and delete what was deleted.
        """
        parsed: list[tuple[dict[str, Any] | str, ApplyContext]] = []
        for command, context in commands:
            try:
                parsed.append((parse_command(command), context))
            except CommandError as error:
                parsed.append((str(error), context))
        # A put's result does not depend on what it overwrites: read only the keys that some
        # get, delete or cas of the batch looks at (a put-only batch reads nothing).
        keys = {
            item["key"]
            for item, _context in parsed
            if isinstance(item, dict) and item["op"] != "put"
        }
        current: dict[str, str | None] = dict.fromkeys(keys)
        if keys:
            current.update((key, value) for key, value, _instance in self._read(keys))
        table = Entry._meta.db_table
        written: dict[str, tuple[str, int] | None] = {}
        results: list[Any] = []
        for item, context in parsed:
            if isinstance(item, str):
                results.append({"error": item})
                continue
            op, key = item["op"], item["key"]
            if op == "put":
                current[key] = item["value"]
                written[key] = (item["value"], context.instance)
                results.append({"key": key, "value": item["value"]})
                continue
            value = current[key]
            if op == "get":
                results.append({"key": key, "value": value, "found": value is not None})
            elif op == "delete":
                results.append({"key": key, "deleted": value is not None})
                current[key] = None
                written[key] = None
            elif op == "cas" and value != item.get("expected"):
                results.append({"key": key, "succeeded": False, "value": value})
            else:  # a cas that matched
                current[key] = item["value"]
                written[key] = (item["value"], context.instance)
                results.append({"key": key, "succeeded": True, "value": item["value"]})
        deleted = [(self.group_id, key) for key, entry in written.items() if entry is None]
        rows = [
            (self.group_id, key, entry[0], entry[1])
            for key, entry in written.items()
            if entry is not None
        ]
        with raw_cursor() as cursor:
            if deleted:
                cursor.executemany(
                    f'DELETE FROM {table} WHERE group_id = %s AND "key" = %s', deleted
                )
            if rows:
                cursor.executemany(
                    f'INSERT INTO {table} (group_id, "key", "value", instance) '
                    'VALUES (%s, %s, %s, %s) ON CONFLICT (group_id, "key") DO UPDATE '
                    'SET "value" = excluded."value", instance = excluded.instance',
                    rows,
                )
        return results


def _fetched(cursor: Any, chunk: int = 1000) -> Iterator[tuple[Any, ...]]:
    """A query's rows a chunk at a time. (SQLite's driver reads them from the file as they are
    fetched; psycopg's default cursor has them all in memory once ``execute`` returned.)"""
    while rows := cursor.fetchmany(chunk):
        yield from rows
