"""Hypothesis strategies for every message class, derived from the classes' type hints.

Deriving them (instead of listing fields by hand) means a field the core adds is exercised by the
round-trip test at once, without anyone remembering to update this file.
"""

from __future__ import annotations

import dataclasses
import typing

from hypothesis import strategies as st

from consensus.core.ballot import Ballot
from consensus.core.messages import (
    MESSAGE_TYPES,
    AcceptedEntry,
    ChosenEntry,
    Command,
    Message,
)
from consensus.transport.codec import UINT_MAX

uints = st.one_of(st.integers(0, 1000), st.integers(0, UINT_MAX))
ballots = st.builds(Ballot, uints, uints)
commands = st.builds(Command, st.text(max_size=20), st.text(max_size=40))
values = st.lists(commands, max_size=4).map(tuple)
accepted_entries = st.builds(AcceptedEntry, uints, ballots, values, st.booleans())
chosen_entries = st.builds(ChosenEntry, uints, values)

_BY_HINT: dict[object, st.SearchStrategy[typing.Any]] = {
    int: uints,
    bool: st.booleans(),
    str: st.text(max_size=20),
    Ballot: ballots,
    tuple[Command, ...]: values,
    tuple[AcceptedEntry, ...]: st.lists(accepted_entries, max_size=3).map(tuple),
    tuple[ChosenEntry, ...]: st.lists(chosen_entries, max_size=3).map(tuple),
}


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    hints = typing.get_type_hints(cls)
    fields = {field.name: _BY_HINT[hints[field.name]] for field in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


messages = st.one_of([message_strategy(cls) for cls in MESSAGE_TYPES])
