"""The client stream's request ids (``consensus/api/stream.py``): strings and integers of at most
64 bits come back exactly as sent; anything else gets a 400 with ``"id": null`` and the stream
stays open. A float is refused too: orjson reads an integer beyond 64 bits as one, and echoing
it rounded (``1.2345678901234568e+29``) would match no request.

In-process against the fake node of ``conftest.py`` (``exchange`` sends one frame)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import FakeNode
from tests.api.test_stream_kv_limits import exchange

pytestmark = pytest.mark.django_db(transaction=True)

COMMAND = json.dumps({"op": "put", "key": "k", "value": "v"})


def request(client_id: Any) -> dict[str, Any]:
    return {"id": client_id, "op": "submit", "group": 1, "command": COMMAND}


@pytest.mark.parametrize(
    "client_id",
    ["a", "", 0, -1, 7, 2**64 - 1, -(2**63)],
    ids=["string", "empty", "zero", "negative", "small", "u64-max", "i64-min"],
)
def test_strings_and_64_bit_integers_are_echoed_as_sent(
    stream_node: FakeNode, client_id: str | int
) -> None:
    answers = exchange([request(client_id)])
    assert answers[client_id]["ok"] is True
    assert type(next(iter(answers))) is type(client_id)


@pytest.mark.parametrize(
    "client_id",
    [2**64 + 1, 123456789012345678901234567890, -(2**63) - 1, 1.5, 1.0],
    ids=["u64-max+2", "30-digits", "i64-min-1", "fraction", "whole-float"],
)
def test_a_float_id_is_refused_and_said_to_maybe_be_an_overflowed_integer(
    stream_node: FakeNode, client_id: int | float
) -> None:
    answer = exchange([request(client_id)])[None]
    assert answer["ok"] is False and answer["status"] == 400, answer
    assert "ids are strings or integers of at most 64 bits" in answer["error"]
    assert "a larger integer arrives as a float" in answer["error"]


@pytest.mark.parametrize(
    "body",
    [{}, {"id": None}, {"id": True}, {"id": False}, {"id": [1]}, {"id": {"a": 1}}],
    ids=["missing", "null", "true", "false", "list", "object"],
)
def test_other_ids_are_refused_with_a_null_id_in_the_same_words(
    stream_node: FakeNode, body: dict[str, Any]
) -> None:
    answer = exchange([{**body, "op": "submit", "group": 1, "command": COMMAND}])[None]
    assert answer["ok"] is False and answer["status"] == 400, answer
    assert (
        answer["error"]
        == "every request needs an 'id': ids are strings or integers of at most 64 bits"
    )


def test_a_bad_id_does_not_spoil_the_rest_of_its_frame(stream_node: FakeNode) -> None:
    answers = exchange([request(2**70), request("ok"), request(8)])
    assert answers[None]["status"] == 400
    assert answers["ok"]["ok"] is True and answers[8]["ok"] is True
