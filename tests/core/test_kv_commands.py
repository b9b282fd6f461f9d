"""How the KV store reads a command's JSON (``kvstore.statemachines.load_command``): the same
answer wherever it runs. ``json``, the fallback for what orjson refuses, recurses, and where it
hits Python's recursion limit depends on the caller's stack: a deeply nested command that also
held a NaN parsed on a node's writer thread and raised RecursionError (a 500) on its loop."""

from __future__ import annotations

import pytest

from kvstore.statemachines import MAX_FALLBACK_DEPTH, CommandError, load_command


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def call_with_stack(depth: int, fn, *args):
    """``fn(*args)`` called ``depth`` frames deeper than here."""
    if depth == 0:
        return fn(*args)
    return call_with_stack(depth - 1, fn, *args)


@pytest.mark.parametrize("stack", [0, 200, 400])
def test_deep_commands_get_one_answer_whatever_the_stack(stack: int) -> None:
    assert call_with_stack(stack, load_command, nested(900)) is not None  # orjson: fine
    for text in (nested(600, "NaN"), nested(5000), nested(5000, "NaN")):
        with pytest.raises(CommandError, match="not JSON"):
            call_with_stack(stack, load_command, text)
    assert call_with_stack(stack, load_command, nested(MAX_FALLBACK_DEPTH, "NaN")) is not None


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"a": NaN, "b": "' + "[" * 1000 + '\\"' + "[" * 10 + '"}'
    assert load_command(text)["b"].startswith("[[")
