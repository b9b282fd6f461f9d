"""The peer wire format: many Paxos messages per websocket frame, in compact msgpack.

Theory of operation
-------------------
Per-message overhead in Python, not bandwidth, limits a Paxos node (a loopback websocket carries
20,000-30,000 frames/s on a 2-core machine), so one websocket frame carries a whole batch of
messages::

    frame   = msgpack([VERSION, [message, message, ...]])
    message = [type_tag, group_id, src, dst, field, field, ...]

``type_tag`` is the index of the class in ``consensus.core.messages.MESSAGE_TYPES``; the remaining
fields follow the dataclass field order. Nested values are positional too: a ballot is
``[round, node_id]``, a command ``[request_id, payload]``, a value a list of commands, an
``AcceptedEntry`` ``[instance, ballot, value, chosen]`` and a ``ChosenEntry`` ``[instance, value]``.
Every integer on the wire is in ``0 .. limit``, the limit of its field (``untrusted.INT_LIMITS``):
``2**31-1`` for node and group ids, ``2**62-1`` for instance numbers and ballot rounds, ``2**63-1``
for the rest (ids and counters are never negative, and nothing a peer sends may overflow a
database column, or be one step from doing so).

Speed: the encoder and decoder of each message class are generated once, at import time, from the
dataclass fields and their type hints, as straight-line code (the technique of ``attrs`` and
``dataclasses`` themselves). Per message there is no reflection and no dict: a decoder is a length
check, a tuple unpack, one chained ``type(...) is`` test and one range test per kind of integer
(ids, sequence numbers, others), then construction -- which bypasses the frozen dataclass
``__init__`` (see "Fast constructors" below; that alone doubled decoding speed). Generating from
the dataclasses also means a field added to the core is carried automatically; ``wire_schema()``
exposes the result so a test can pin it (a change to the wire must bump ``VERSION``).

Measured on the 2-core dev box (``python -m tests.transport.bench_codec``; medians of 3, noisy):
about 1.1-1.4 M messages/s encoded, 0.45-0.57 M/s decoded, 0.33-0.40 M/s both, at 10-1000
messages per frame of the typical leader mix; 1 message per frame: about 0.23 M/s both.

Strictness: a peer is authenticated but may still be buggy, older or newer. ``decode_frame`` checks
everything (``bool`` is not accepted where an ``int`` is expected, although Python says
``True == 1``) and raises ``CodecError`` -- and nothing else -- for any input whatsoever. The
consumer then closes only that link.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack

from consensus.core.ballot import Ballot
from consensus.core.errors import LocalProtocolError, RemoteProtocolError
from consensus.core.messages import (
    MESSAGE_TYPES,
    AcceptedEntry,
    ChosenEntry,
    Command,
    Message,
)

from .untrusted import (
    BALLOT_NODE_LIMIT,
    BALLOT_ROUND_LIMIT,
    INT_LIMITS,
    MAX_ID,
    MAX_INT,
    MAX_SEQUENCE,
    shown,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_MESSAGES_PER_FRAME",
    "UINT_MAX",
    "VERSION",
    "CodecError",
    "decode_frame",
    "encode_frame",
    "encode_frames",
    "wire_schema",
]

VERSION = 8
"""Wire format version, the first element of every frame. Bump it on any change to wire_schema()."""

DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
"""Bytes per frame. Equal to daphne's default websocket_max_message_size, so the two limits agree
even when the server is started without transport-specific options (see hub.daphne_options)."""

DEFAULT_MAX_MESSAGES_PER_FRAME = 10_000
"""Messages per frame; bounds the work one frame can cause before any of it is validated."""

UINT_MAX = MAX_INT
"""Largest integer accepted on the wire (in fields without a smaller limit: ``INT_LIMITS``)."""


class CodecError(RemoteProtocolError):
    """A peer sent bytes that are not a valid frame. The link that carried them is closed."""


# ---------------------------------------------------------------------------------------------
# Fast constructors.
#
# A frozen dataclass's __init__ assigns every field through object.__setattr__, which costs more
# than all the validation below (measured: 1.5 us for an Accepted, 0.5 us with slot setters). The
# core's value classes are plain records (no __post_init__, every field a slot), so the codec
# builds them the way pickle does: allocate, then set each slot through its descriptor. A class
# that ever gains a __post_init__ (or a non-slot field) silently falls back to its constructor.
# ---------------------------------------------------------------------------------------------


def _fast_maker(cls: type) -> Callable[..., Any]:
    """Return ``make(*field_values)`` building an instance of ``cls`` equal to ``cls(...)``."""
    names = [field.name for field in dataclasses.fields(cls)]
    args = ", ".join(f"a{i}" for i in range(len(names)))
    namespace: dict[str, Any] = {"_cls": cls, "_new": object.__new__}
    bypass = not hasattr(cls, "__post_init__") and all(
        field.init and isinstance(getattr(cls, field.name, None), types.MemberDescriptorType)
        for field in dataclasses.fields(cls)
    )
    if bypass:
        lines = [f"def make({args}):", "    o = _new(_cls)"]
        for i, name in enumerate(names):
            namespace[f"_set{i}"] = getattr(cls, name).__set__
            lines.append(f"    _set{i}(o, a{i})")
        lines.append("    return o")
    else:
        keywords = ", ".join(f"{name}=a{i}" for i, name in enumerate(names))
        lines = [f"def make({args}):", f"    return _cls({keywords})"]
    exec(compile("\n".join(lines), f"<codec maker {cls.__name__}>", "exec"), namespace)
    return typing.cast(Callable[..., Any], namespace["make"])


_new_ballot = _fast_maker(Ballot)
_BALLOTS: dict[tuple[int, int], Ballot] = {}
_BALLOT_CACHE_SIZE = 1024


def _make_ballot(round_: int, node_id: int) -> Ballot:
    """Share one Ballot object per (round, node_id): a frame repeats the leader's ballot in nearly
    every message, and a dict hit is cheaper than building the object (ballots are immutable)."""
    key = (round_, node_id)
    ballot = _BALLOTS.get(key)
    if ballot is None:
        if len(_BALLOTS) >= _BALLOT_CACHE_SIZE:
            _BALLOTS.clear()
        ballot = _BALLOTS[key] = _new_ballot(round_, node_id)
    return ballot


_make_command = _fast_maker(Command)
_make_accepted_entry = _fast_maker(AcceptedEntry)
_make_chosen_entry = _fast_maker(ChosenEntry)


# ---------------------------------------------------------------------------------------------
# Nested values. Their shapes are fixed by the core, so they are written by hand.
# ---------------------------------------------------------------------------------------------


def _enc_value(value: tuple[Command, ...]) -> list[tuple[str, str]]:
    return [(command.request_id, command.payload) for command in value]


def _dec_value(raw: object) -> tuple[Command, ...]:
    if type(raw) is not list:
        raise CodecError("a value must be a list of commands")
    make = _make_command
    commands = []
    for item in raw:
        if type(item) is not list or len(item) != 2:
            raise CodecError("a command must be [request_id, payload]")
        request_id, payload = item
        if type(request_id) is not str or type(payload) is not str:
            raise CodecError("request_id and payload must be strings")
        commands.append(make(request_id, payload))
    return tuple(commands)


def _dec_ballot(raw: object) -> Ballot:
    if type(raw) is not list or len(raw) != 2:
        raise CodecError("a ballot must be [round, node_id]")
    round_, node_id = raw
    if (
        not (type(round_) is type(node_id) is int)
        or not 0 <= round_ <= BALLOT_ROUND_LIMIT
        or not 0 <= node_id <= BALLOT_NODE_LIMIT
    ):
        raise CodecError(
            f"a ballot must be [round, node_id] with a round in 0..2**62-1 and a node id in "
            f"0..2**31-1, not [{shown(round_)}, {shown(node_id)}]"
        )
    return _make_ballot(round_, node_id)


def _out_of_range(name: str, fields: tuple[tuple[str, object, int], ...]) -> CodecError:
    """The error for a message whose integers failed the generated range test (its slow path:
    which one, and why)."""
    for field, value, limit in fields:
        if type(value) is not int:
            return CodecError(f"{name}.{field} must be an integer, not {type(value).__name__}")
        if not 0 <= value <= limit:
            return CodecError(
                f"{name}.{field} {shown(value)} is out of range 0..{_LIMIT_TEXT[limit]}"
            )
    return CodecError(f"{name}: integers out of range")  # not reached


_LIMIT_TEXT = {MAX_ID: "2**31-1", MAX_SEQUENCE: "2**62-1", MAX_INT: "2**63-1"}
_LIMIT_NAMES = {MAX_ID: "_MAX_ID", MAX_SEQUENCE: "_MAX_SEQUENCE", MAX_INT: "_MAX_INT"}
for _limit in (*INT_LIMITS.values(), BALLOT_ROUND_LIMIT, BALLOT_NODE_LIMIT):
    # The generated range test ORs the values of one limit together: exact for 2**k - 1 only.
    assert _limit in _LIMIT_NAMES and _limit & (_limit + 1) == 0, _limit


def _enc_accepted_entries(entries: tuple[AcceptedEntry, ...]) -> list[tuple[Any, ...]]:
    return [
        (
            entry.instance,
            (entry.ballot.round, entry.ballot.node_id),
            [(c.request_id, c.payload) for c in entry.value],
            entry.chosen,
        )
        for entry in entries
    ]


def _dec_accepted_entries(raw: object) -> tuple[AcceptedEntry, ...]:
    if type(raw) is not list:
        raise CodecError("accepted entries must be a list")
    entries = []
    for item in raw:
        if type(item) is not list or len(item) != 4:
            raise CodecError("an accepted entry must be [instance, ballot, value, chosen]")
        instance, ballot, value, chosen = item
        if type(instance) is not int or not 0 <= instance <= MAX_SEQUENCE:
            raise CodecError(f"an instance must be an integer in 0..2**62-1, not {shown(instance)}")
        if type(chosen) is not bool:
            raise CodecError("'chosen' must be a boolean")
        entries.append(
            _make_accepted_entry(instance, _dec_ballot(ballot), _dec_value(value), chosen)
        )
    return tuple(entries)


def _enc_chosen_entries(entries: tuple[ChosenEntry, ...]) -> list[tuple[Any, ...]]:
    return [(entry.instance, [(c.request_id, c.payload) for c in entry.value]) for entry in entries]


def _dec_chosen_entries(raw: object) -> tuple[ChosenEntry, ...]:
    if type(raw) is not list:
        raise CodecError("chosen entries must be a list")
    entries = []
    for item in raw:
        if type(item) is not list or len(item) != 2:
            raise CodecError("a chosen entry must be [instance, value]")
        instance, value = item
        if type(instance) is not int or not 0 <= instance <= MAX_SEQUENCE:
            raise CodecError(f"an instance must be an integer in 0..2**62-1, not {shown(instance)}")
        entries.append(_make_chosen_entry(instance, _dec_value(value)))
    return tuple(entries)


# ---------------------------------------------------------------------------------------------
# Message classes: generated straight-line code, one encoder and one decoder per class.
# ---------------------------------------------------------------------------------------------

_KIND_BY_HINT: dict[object, str] = {
    int: "uint",
    bool: "bool",
    str: "str",
    Ballot: "ballot",
    tuple[Command, ...]: "value",
    tuple[AcceptedEntry, ...]: "accepted_entries",
    tuple[ChosenEntry, ...]: "chosen_entries",
}
"""Field type hint -> wire kind. A hint missing here makes the import fail loudly, on purpose."""

_HEADER = ("group_id", "src", "dst")


def _field_kinds(cls: type[Message]) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(cls)
    kinds = []
    for field in dataclasses.fields(cls):
        kind = _KIND_BY_HINT.get(hints[field.name])
        if kind is None:
            raise TypeError(
                f"consensus.transport.codec cannot carry {cls.__name__}.{field.name} "
                f"of type {hints[field.name]!r}; teach codec._KIND_BY_HINT about it"
            )
        kinds.append((field.name, kind))
    if tuple(name for name, _ in kinds[:3]) != _HEADER:
        raise TypeError(f"{cls.__name__} must start with the fields {_HEADER}")
    return kinds


def _generate(tag: int, cls: type[Message]) -> str:
    """Return the source of ``_enc_<Class>(m)`` and ``_dec_<Class>(m)`` for one message class."""
    name = cls.__name__
    enc_items = [str(tag)]
    dec_vars = ["_tag"]
    ints: list[tuple[str, str, int]] = []  # (variable, field, limit)
    checks: list[str] = []
    args: list[str] = []
    for position, (field_name, kind) in enumerate(_field_kinds(cls)):
        attr = f"m.{field_name}"
        var = f"f{position}"
        dec_vars.append(var)
        bad = f"raise _CodecError('{name}.{field_name} has the wrong type or shape')"
        if kind == "uint":
            if field_name not in INT_LIMITS:
                raise TypeError(
                    f"consensus.transport.codec: {name}.{field_name} is an integer field without "
                    "a range; give it one in consensus.transport.untrusted.INT_LIMITS"
                )
            enc_items.append(attr)
            ints.append((var, field_name, INT_LIMITS[field_name]))
            args.append(var)
        elif kind in ("bool", "str"):
            enc_items.append(attr)
            checks += [f"    if type({var}) is not {kind}:", f"        {bad}"]
            args.append(var)
        elif kind == "ballot":
            enc_items.append(f"({attr}.round, {attr}.node_id)")
            checks += [
                f"    if type({var}) is not list or len({var}) != 2:",
                f"        {bad}",
                f"    {var}r, {var}n = {var}",
            ]
            ints += [
                (f"{var}r", f"{field_name}.round", BALLOT_ROUND_LIMIT),
                (f"{var}n", f"{field_name}.node_id", BALLOT_NODE_LIMIT),
            ]
            args.append(f"_make_ballot({var}r, {var}n)")
        else:  # a list of nested values: the hand-written helpers above
            enc_items.append(f"_enc_{kind}({attr})")
            args.append(f"_dec_{kind}({var})")
    size = len(dec_vars)
    lines = [
        f"def _enc_{name}(m):",
        f"    return ({', '.join(enc_items)})",
        "",
        f"def _dec_{name}(m):",
        f"    if len(m) != {size}:",
        f"        raise _CodecError('{name} must have {size} elements, not %d' % len(m))",
        f"    {', '.join(dec_vars)} = m",
        *checks,
    ]
    if ints:
        # For Python ints, OR-ing values in 0..2**k-1 stays in that range, and OR-ing in any
        # negative value gives a negative result, so one comparison range-checks all the fields
        # of one limit. The type test comes first: OR-ing a str would raise a TypeError.
        same_type = " is ".join(f"type({var})" for var, _, _ in ints)
        ranges = [
            f"not 0 <= ({' | '.join(var for var, _, each in ints if each == limit)}) "
            f"<= {_LIMIT_NAMES[limit]}"
            for limit in sorted({limit for _, _, limit in ints})
        ]
        fields = "".join(
            f"('{field}', {var}, {_LIMIT_NAMES[limit]}), " for var, field, limit in ints
        )
        lines += [
            f"    if not ({same_type} is int) or {' or '.join(ranges)}:",
            f"        raise _out_of_range('{name}', ({fields}))",
        ]
    lines += [f"    return _make_{name}({', '.join(args)})", ""]
    return "\n".join(lines)


def _build() -> tuple[dict[type[Message], Callable[[Any], tuple[Any, ...]]], tuple[Any, ...], str]:
    namespace: dict[str, Any] = {
        "_CodecError": CodecError,
        "_out_of_range": _out_of_range,
        **{name: limit for limit, name in _LIMIT_NAMES.items()},
        "_make_ballot": _make_ballot,
        "_enc_value": _enc_value,
        "_dec_value": _dec_value,
        "_enc_accepted_entries": _enc_accepted_entries,
        "_dec_accepted_entries": _dec_accepted_entries,
        "_enc_chosen_entries": _enc_chosen_entries,
        "_dec_chosen_entries": _dec_chosen_entries,
    }
    for cls in MESSAGE_TYPES:
        namespace[f"_make_{cls.__name__}"] = _fast_maker(cls)
    source = "\n".join(_generate(tag, cls) for tag, cls in enumerate(MESSAGE_TYPES))
    exec(compile(source, "<consensus.transport.codec generated>", "exec"), namespace)
    encoders = {cls: namespace[f"_enc_{cls.__name__}"] for cls in MESSAGE_TYPES}
    decoders = tuple(namespace[f"_dec_{cls.__name__}"] for cls in MESSAGE_TYPES)
    return encoders, decoders, source


_ENCODERS, _DECODERS, GENERATED_SOURCE = _build()
_TAG_COUNT = len(_DECODERS)


def wire_schema() -> list[tuple[int, str, list[tuple[str, str]]]]:
    """``[(type_tag, class name, [(field, wire kind), ...]), ...]``: what is on the wire, for tests
    that pin the format and for humans (``GENERATED_SOURCE`` has the generated code itself)."""
    return [(tag, cls.__name__, _field_kinds(cls)) for tag, cls in enumerate(MESSAGE_TYPES)]


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def encode_frame(messages: Iterable[Message]) -> bytes:
    """Encode messages into one frame. Raises ``LocalProtocolError`` for a non-message or a value
    msgpack cannot carry (e.g. a string with a lone surrogate): that is our bug, not the peer's."""
    encoders = _ENCODERS
    try:
        return _packb((VERSION, [encoders[m.__class__](m) for m in messages]))
    except (KeyError, AttributeError) as exc:
        raise LocalProtocolError(f"not a message the codec knows: {exc!r}") from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"message cannot be encoded: {exc}") from exc


def encode_frames(
    messages: Sequence[Message],
    max_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_messages: int = DEFAULT_MAX_MESSAGES_PER_FRAME,
) -> tuple[list[tuple[bytes, int]], list[Message]]:
    """Pack ``messages``, in order, into as few frames as the limits allow.

    Returns ``([(frame, message_count), ...], rejected)``. ``rejected`` holds the messages that
    cannot be sent at all: one that alone encodes larger than ``max_size``, or one that cannot be
    encoded. Dropping them (the caller logs) is right for Paxos, which retries; sending them would
    make the peer close the link and lose the rest of the batch with them.
    """
    frames: list[tuple[bytes, int]] = []
    rejected: list[Message] = []
    pending = [messages[i : i + max_messages] for i in range(0, len(messages), max_messages)]
    pending.reverse()  # a stack: pop() takes the earliest chunk, so frames keep message order
    while pending:
        chunk = pending.pop()
        try:
            frame = encode_frame(chunk)
        except LocalProtocolError:
            frame = None  # some message in the chunk is unencodable: split to isolate it
        if frame is not None and len(frame) <= max_size:
            frames.append((frame, len(chunk)))
        elif len(chunk) == 1:
            rejected.append(chunk[0])
        else:
            half = len(chunk) // 2
            pending += [chunk[half:], chunk[:half]]
    return frames, rejected


def decode_frame(
    data: bytes,
    max_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_messages: int = DEFAULT_MAX_MESSAGES_PER_FRAME,
) -> list[Message]:
    """Decode and validate one frame. Raises ``CodecError`` (and nothing else) if it is invalid."""
    if type(data) is not bytes:
        raise CodecError(f"a frame must be bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise CodecError(f"frame of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        # unpackb bounds every string/array/map length by len(data), so a hostile length header
        # cannot make it allocate more than the frame size suggests.
        frame = _unpackb(data)
    except Exception as exc:  # the parser of untrusted bytes: any failure means "invalid"
        raise CodecError(f"not a msgpack frame ({type(exc).__name__}: {str(exc)[:200]})") from None
    if type(frame) is not list or len(frame) != 2:
        raise CodecError("a frame must be [version, messages]")
    version, body = frame
    if type(version) is not int or version != VERSION:
        raise CodecError(f"unsupported frame version {shown(version)} (this node speaks {VERSION})")
    if type(body) is not list:
        raise CodecError("the messages of a frame must be a list")
    if len(body) > max_messages:
        raise CodecError(f"frame carries {len(body)} messages, more than {max_messages}")
    decoders = _DECODERS
    count = _TAG_COUNT
    messages = []
    for raw in body:
        if type(raw) is not list or not raw:
            raise CodecError("a message must be a non-empty list")
        tag = raw[0]
        if type(tag) is not int or not 0 <= tag < count:
            raise CodecError(f"unknown message type tag {shown(tag)}")
        messages.append(decoders[tag](raw))
    return messages
