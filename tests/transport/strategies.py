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
from consensus.transport.untrusted import (
    BALLOT_NODE_LIMIT,
    BALLOT_ROUND_LIMIT,
    INT_LIMITS,
    MAX_SEQUENCE,
)


def uints(limit: int) -> st.SearchStrategy[int]:
    """Integers a peer may send in a field of that limit (``untrusted.INT_LIMITS``), small ones
    and the edges more often than the rest."""
    return st.one_of(
        st.integers(0, 1000), st.sampled_from([limit - 1, limit]), st.integers(0, limit)
    )


ballots = st.builds(Ballot, uints(BALLOT_ROUND_LIMIT), uints(BALLOT_NODE_LIMIT))
commands = st.builds(Command, st.text(max_size=20), st.text(max_size=40))
values = st.lists(commands, max_size=4).map(tuple)
accepted_entries = st.builds(AcceptedEntry, uints(MAX_SEQUENCE), ballots, values, st.booleans())
chosen_entries = st.builds(ChosenEntry, uints(MAX_SEQUENCE), values)

_BY_HINT: dict[object, st.SearchStrategy[typing.Any]] = {
    bool: st.booleans(),
    str: st.text(max_size=20),
    Ballot: ballots,
    tuple[Command, ...]: values,
    tuple[AcceptedEntry, ...]: st.lists(accepted_entries, max_size=3).map(tuple),
    tuple[ChosenEntry, ...]: st.lists(chosen_entries, max_size=3).map(tuple),
}


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    hints = typing.get_type_hints(cls)
    fields = {
        field.name: uints(INT_LIMITS[field.name])
        if hints[field.name] is int
        else _BY_HINT[hints[field.name]]
        for field in dataclasses.fields(cls)
    }
    return st.builds(cls, **fields)


messages = st.one_of([message_strategy(cls) for cls in MESSAGE_TYPES])
