"""The stored form of a ``Value``: JSON text, a list of ``[request_id, payload]`` pairs.

JSON keeps the log readable in the admin and searchable with ``value__icontains``. orjson does the
work; the standard library takes over for strings orjson refuses (lone surrogates, which Python's
``json`` can produce from a client's ``"\\ud800"``), so no command can make a commit fail.
"""

from __future__ import annotations

import json

import orjson

from consensus.core.messages import NOOP, Command, Value

NOOP_JSON = "[]"


def value_to_json(value: Value) -> str:
    """Encode a value; ``NOOP`` becomes ``[]``."""
    if not value:
        return NOOP_JSON
    pairs = [[command.request_id, command.payload] for command in value]
    try:
        return orjson.dumps(pairs).decode()
    except orjson.JSONEncodeError:
        return json.dumps(pairs, ensure_ascii=True)


def value_from_json(text: str) -> Value:
    """Decode what ``value_to_json`` wrote."""
    if text == NOOP_JSON:
        return NOOP
    try:
        pairs = orjson.loads(text)
    except orjson.JSONDecodeError:
        pairs = json.loads(text)
    return tuple(Command(request_id, payload) for request_id, payload in pairs)
