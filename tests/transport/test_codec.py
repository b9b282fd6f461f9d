"""The wire codec: exact round trips, and strict, total decoding (CodecError and nothing else)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.core.ballot import Ballot
from consensus.core.errors import LocalProtocolError, RemoteProtocolError
from consensus.core.messages import (
    MESSAGE_TYPES,
    Accept,
    Accepted,
    AcceptedEntry,
    ChosenEntry,
    Command,
    Forward,
    Heartbeat,
    LearnReply,
    LearnRequest,
    Message,
    Promise,
)
from consensus.transport import codec
from consensus.transport.codec import (
    VERSION,
    CodecError,
    decode_frame,
    encode_frame,
    encode_frames,
)
from consensus.transport.untrusted import INT_LIMITS, MAX_ID, MAX_INT, MAX_SEQUENCE

from .strategies import message_strategy, messages

B = Ballot(3, 1)


def accept(instance: int = 1, payload: str = "x") -> Accept:
    return Accept(
        group_id=1,
        src=1,
        dst=2,
        ballot=B,
        instance=instance,
        value=(Command("r1", payload),),
        chosen_upto=0,
    )


def raw_frame(*messages: object, version: object = VERSION) -> bytes:
    return msgpack.packb([version, list(messages)])


# --- round trips -------------------------------------------------------------------------------


@given(st.lists(messages, max_size=20))
def test_round_trip_any_batch(batch: list[Message]) -> None:
    decoded = decode_frame(encode_frame(batch))
    assert decoded == batch
    assert [type(m) for m in decoded] == [type(m) for m in batch]
    assert [hash(m) for m in decoded] == [hash(m) for m in batch]


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_round_trip_every_type(cls: type[Message], data: st.DataObject) -> None:
    message = data.draw(message_strategy(cls))
    assert decode_frame(encode_frame([message])) == [message]


def test_round_trip_nested_values_and_edges() -> None:
    value = (Command("", ""), Command("ü-✓", '{"type": "put", "key": "k", "value": "v"}'))
    batch = [
        Promise(
            group_id=MAX_ID,
            src=1,
            dst=2,
            ballot=Ballot(MAX_SEQUENCE, MAX_ID),
            first_instance=0,
            chosen_upto=5,
            accepted=(
                AcceptedEntry(6, Ballot(2, 3), value, False),
                AcceptedEntry(MAX_SEQUENCE, Ballot(0, 0), (), True),
            ),
            nonce=MAX_INT,
        ),
        LearnReply(group_id=1, src=1, dst=2, entries=(ChosenEntry(1, value),), chosen_upto=1),
        Forward(group_id=1, src=1, dst=2, commands=()),
    ]
    decoded = decode_frame(encode_frame(batch))
    assert decoded == batch
    assert decoded[0].accepted[1].value == ()
    assert type(decoded[0].accepted[1].chosen) is bool


def _wire_ints(message: Message) -> list[tuple[str, int]]:
    """(field, limit) of every integer of a message class on the wire, in wire order."""
    found = []
    for field, kind in _field_kinds(type(message)):
        if kind == "uint":
            found.append((field, INT_LIMITS[field]))
        elif kind == "ballot":
            found += [(f"{field}.round", MAX_SEQUENCE), (f"{field}.node_id", MAX_ID)]
    return found


def _field_kinds(cls: type[Message]) -> list[tuple[str, str]]:
    return next(fields for _, name, fields in codec.wire_schema() if name == cls.__name__)


def _with_int(message: Message, field: str, value: int) -> bytes:
    """``message`` encoded with one integer (``ballot.round``: a ballot's round) set to
    ``value``, which encode_frame would not let through."""
    raw = msgpack.unpackb(encode_frame([message]))
    names = [name for name, _ in _field_kinds(type(message))]
    name, _, part = field.partition(".")
    position = 1 + names.index(name)
    body = raw[1][0]
    if part:
        body[position][0 if part == "round" else 1] = value
    else:
        body[position] = value
    return msgpack.packb(raw)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
@settings(max_examples=20, deadline=None)
def test_every_integer_is_refused_above_its_limit_and_taken_at_it(
    cls: type[Message], data: st.DataObject
) -> None:
    """Node and group ids up to 2**31-1, instances and rounds up to 2**62-1, the rest up to
    2**63-1 (``untrusted.INT_LIMITS``): one past a field's limit, and any negative value, make
    the frame malformed, and the error names the field."""
    message = data.draw(message_strategy(cls))
    for field, limit in _wire_ints(message):
        assert len(decode_frame(_with_int(message, field, limit))) == 1
        for bad in (limit + 1, -1, 2**64 - 1):
            with pytest.raises(CodecError, match=rf"{cls.__name__}\.{field} .* out of range"):
                decode_frame(_with_int(message, field, bad))


def test_every_integer_field_has_a_limit() -> None:
    """A message field the core adds must get a range in untrusted.INT_LIMITS, or the codec
    does not import (the generator refuses it)."""
    int_fields = {
        field for _, _, fields in codec.wire_schema() for field, kind in fields if kind == "uint"
    }
    assert int_fields <= set(INT_LIMITS)
    assert set(INT_LIMITS.values()) == {MAX_ID, MAX_SEQUENCE, MAX_INT}


def test_empty_frame_round_trips() -> None:
    assert decode_frame(encode_frame([])) == []


def test_wire_schema_is_pinned() -> None:
    """Changing a message class changes the wire: then bump codec.VERSION and update this."""
    assert VERSION == 8
    assert codec.wire_schema() == [
        (
            0,
            "Prepare",
            [
                *HEADER,
                ("ballot", "ballot"),
                ("first_instance", "uint"),
                ("force", "bool"),
                ("nonce", "uint"),
            ],
        ),
        (
            1,
            "Promise",
            [
                *HEADER,
                ("ballot", "ballot"),
                ("first_instance", "uint"),
                ("chosen_upto", "uint"),
                ("accepted", "accepted_entries"),
                ("nonce", "uint"),
            ],
        ),
        (2, "Nack", [*HEADER, ("ballot", "ballot"), ("promised", "ballot")]),
        (
            3,
            "Accept",
            [
                *HEADER,
                ("ballot", "ballot"),
                ("instance", "uint"),
                ("value", "value"),
                ("chosen_upto", "uint"),
            ],
        ),
        (4, "Accepted", [*HEADER, ("ballot", "ballot"), ("instance", "uint")]),
        (
            5,
            "Heartbeat",
            [
                *HEADER,
                ("ballot", "ballot"),
                ("chosen_upto", "uint"),
                ("seq", "uint"),
                ("voted", "uint"),
            ],
        ),
        (
            6,
            "HeartbeatAck",
            [*HEADER, ("ballot", "ballot"), ("seq", "uint"), ("chosen_upto", "uint")],
        ),
        (7, "LearnRequest", [*HEADER, ("first_instance", "uint"), ("last_instance", "uint")]),
        (8, "LearnReply", [*HEADER, ("entries", "chosen_entries"), ("chosen_upto", "uint")]),
        (9, "Forward", [*HEADER, ("commands", "value")]),
        (10, "ReadIndexRequest", [*HEADER, ("token", "uint")]),
        (11, "ReadIndexReply", [*HEADER, ("token", "uint"), ("index", "uint")]),
        (12, "TimeoutNow", [*HEADER, ("ballot", "ballot")]),
        (13, "PreVote", [*HEADER, ("round", "uint")]),
        (14, "PreVoteReply", [*HEADER, ("round", "uint"), ("granted", "bool")]),
        (15, "RebuildQuery", [*HEADER, ("token", "uint")]),
        (
            16,
            "RebuildInfo",
            [
                *HEADER,
                ("token", "uint"),
                ("promised", "ballot"),
                ("highest_instance", "uint"),
                ("chosen_upto", "uint"),
                ("seen_promised", "ballot"),
                ("seen_instance", "uint"),
            ],
        ),
        (17, "FillRequest", [*HEADER, ("instance", "uint")]),
        (
            18,
            "ResultDigest",
            [*HEADER, ("first", "uint"), ("last", "uint"), ("window", "uint"), ("digest", "uint")],
        ),
    ]


HEADER = [("group_id", "uint"), ("src", "uint"), ("dst", "uint")]


def test_wire_layout_is_positional_and_compact() -> None:
    frame = encode_frame([accept(instance=7)])
    assert msgpack.unpackb(frame) == [VERSION, [[3, 1, 1, 2, [3, 1], 7, [["r1", "x"]], 0]]]


def test_fast_constructor_matches_the_dataclass_constructor() -> None:
    decoded = decode_frame(encode_frame([accept()]))[0]
    assert decoded == accept()
    assert hash(decoded) == hash(accept())
    assert repr(decoded) == repr(accept())
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.instance = 9  # type: ignore[misc]


def test_fast_constructor_falls_back_for_classes_with_post_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        number: int

        def __post_init__(self) -> None:
            if self.number < 0:
                raise ValueError("negative")

    make = codec._fast_maker(Checked)
    assert make(3) == Checked(3)
    with pytest.raises(ValueError, match="negative"):
        make(-1)


# --- strict decoding: each rule ----------------------------------------------------------------

GOOD = [4, 1, 1, 2, [3, 1], 5]  # an Accepted


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a msgpack frame"),
        (b"\xc1", "not a msgpack frame"),  # 0xc1 is never used by msgpack
        (raw_frame(GOOD)[:-1], "not a msgpack frame"),  # truncated
        (raw_frame(GOOD) + b"\x00", "not a msgpack frame"),  # trailing bytes
        (raw_frame(GOOD, version=VERSION + 1), "unsupported frame version"),
        (raw_frame(GOOD, version=VERSION - 1), "unsupported frame version"),
        (raw_frame(GOOD, version=True), "unsupported frame version"),  # True == 1, still wrong
        (raw_frame(GOOD, version=float(VERSION)), "unsupported frame version"),
        (msgpack.packb([VERSION]), r"\[version, messages\]"),
        (msgpack.packb({"v": 1}), r"\[version, messages\]"),
        (msgpack.packb([VERSION, {"m": 1}]), "must be a list"),
        (raw_frame([]), "non-empty list"),
        (raw_frame("abc"), "non-empty list"),
        (raw_frame([99, 1, 1, 2]), "unknown message type tag 99"),
        (raw_frame([-1, 1, 1, 2]), "unknown message type tag -1"),
        (raw_frame([True, 1, 1, 2, [3, 1], 5]), "unknown message type tag True"),
        (raw_frame(["Accepted", 1, 1, 2]), "unknown message type tag"),
        (raw_frame([4, 1, 1, 2, [3, 1]]), "must have 6 elements"),
        (raw_frame([4, 1, 1, 2, [3, 1], 5, 6]), "must have 6 elements"),
        (raw_frame([4, 1, 1, 2, [3, 1], -5]), "Accepted.instance -5 is out of range"),
        (raw_frame([4, 1, 1, 2, [3, 1], 2**63]), "Accepted.instance .* is out of range"),
        (raw_frame([4, 1, 1, 2, [3, 1], 2**64 - 1]), "Accepted.instance .* is out of range"),
        (raw_frame([4, True, 1, 2, [3, 1], 5]), "group_id must be an integer, not bool"),
        (raw_frame([4, 1, 1, 2, [3, False], 5]), "node_id must be an integer, not bool"),
        (raw_frame([4, 1.0, 1, 2, [3, 1], 5]), "group_id must be an integer, not float"),
        (raw_frame([4, "1", 1, 2, [3, 1], 5]), "group_id must be an integer, not str"),
        (raw_frame([4, None, 1, 2, [3, 1], 5]), "group_id must be an integer, not NoneType"),
        (raw_frame([4, 1, 1, 2, [3, 1, 0], 5]), "Accepted.ballot"),
        (raw_frame([4, 1, 1, 2, {"round": 3}, 5]), "Accepted.ballot"),
        (
            raw_frame([4, 1, 1, 2, [-3, 1], 5]),
            r"Accepted.ballot.round -3 is out of range 0..2\*\*62-1",
        ),
        (
            raw_frame([4, 2**31, 1, 2, [3, 1], 5]),
            r"Accepted.group_id .* is out of range 0..2\*\*31-1",
        ),
        (raw_frame([4, 1, 1, 2, [3, 2**31], 5]), r"Accepted.ballot.node_id .* 0..2\*\*31-1"),
        (raw_frame([4, 1, 1, 2, [2**62, 1], 5]), r"Accepted.ballot.round .* 0..2\*\*62-1"),
        (raw_frame([4, 1, 1, 2, [3, 1], 2**62]), r"Accepted.instance .* 0..2\*\*62-1"),
        (raw_frame([3, 1, 1, 2, [3, 1], 5, [["r", b"bytes"]], 0]), "must be strings"),
        (raw_frame([3, 1, 1, 2, [3, 1], 5, [["r"]], 0]), r"\[request_id, payload\]"),
        (raw_frame([3, 1, 1, 2, [3, 1], 5, "value", 0]), "a value must be a list"),
        (raw_frame([3, 1, 1, 2, [3, 1], 5, [], -1]), "Accept.chosen_upto -1 is out of range"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[1, [1, 1], [], 1]], 0]), "'chosen' must be"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[-1, [1, 1], [], True]], 0]), "an instance must"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[1, [1], [], True]], 0]), "a ballot must"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[2**62, [1, 1], [], True]], 0]), "an instance"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[1, [2**62, 1], [], True]], 0]), "a ballot must"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[1, [1, 2**31], [], True]], 0]), "a ballot must"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, [[1, [1, 1], []]], 0]), "an accepted entry must"),
        (raw_frame([1, 1, 1, 2, [3, 1], 0, 0, None, 0]), "accepted entries must be a list"),
        (raw_frame([8, 1, 1, 2, [[-1, []]], 0]), "an instance must"),
        (raw_frame([8, 1, 1, 2, [[2**62, []]], 0]), "an instance must"),
        (raw_frame([8, 1, 1, 2, [[1]], 0]), "a chosen entry must"),
        (raw_frame([8, 1, 1, 2, 7, 0]), "chosen entries must be a list"),
        (msgpack.packb([VERSION, [[msgpack.ExtType(1, b"x")]]]), "unknown message type tag"),
    ],
)
def test_invalid_frames_raise_codec_error(data: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode_frame(data)


def test_invalid_utf8_is_a_codec_error() -> None:
    data = raw_frame([9, 1, 1, 2, [["r", "x"]]]).replace(b"\xa1x", b"\xa1\xff")
    with pytest.raises(CodecError, match="not a msgpack frame"):
        decode_frame(data)


def test_codec_error_is_a_remote_protocol_error() -> None:
    assert issubclass(CodecError, RemoteProtocolError)


def test_oversized_frame_is_rejected_before_parsing() -> None:
    frame = encode_frame([accept(payload="x" * 2000)])
    assert decode_frame(frame, max_size=len(frame)) == [accept(payload="x" * 2000)]
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_frame(frame, max_size=len(frame) - 1)


def test_too_many_messages() -> None:
    frame = encode_frame([accept(instance=i) for i in range(11)])
    assert len(decode_frame(frame, max_messages=11)) == 11
    with pytest.raises(CodecError, match="more than 10"):
        decode_frame(frame, max_messages=10)


def test_non_bytes_input() -> None:
    for data in (None, "text", bytearray(b"\x92\x01\x90"), 5):
        with pytest.raises(CodecError, match="must be bytes"):
            decode_frame(data)  # type: ignore[arg-type]


def test_deep_nesting_is_a_codec_error() -> None:
    data = b"\x92\x01" + b"\x91" * 5000 + b"\xc0"
    with pytest.raises(CodecError):
        decode_frame(data)


def test_huge_length_header_does_not_allocate() -> None:
    # array32 claiming 2**32-1 elements in a 10-byte frame
    with pytest.raises(CodecError):
        decode_frame(b"\x92\x01\xdd\xff\xff\xff\xff\x00\x00")


# --- strict decoding: totality, with hypothesis ------------------------------------------------


def _decode_totally(data: bytes) -> None:
    """decode_frame may succeed or raise CodecError; anything else fails the test."""
    try:
        result = decode_frame(data)
    except CodecError:
        return
    assert all(type(m) in MESSAGE_TYPES for m in result)


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_only_raise_codec_error(data: bytes) -> None:
    _decode_totally(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda children: st.lists(children, max_size=8)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=30,
)


@given(msgpack_values)
@settings(max_examples=500)
def test_random_msgpack_structures_only_raise_codec_error(value: object) -> None:
    _decode_totally(msgpack.packb(value))


@given(st.lists(st.integers(0, 9) | msgpack_values, min_size=1, max_size=9))
@settings(max_examples=500)
def test_random_message_shapes_only_raise_codec_error(fields: list[object]) -> None:
    _decode_totally(raw_frame(fields))


@given(st.lists(messages, min_size=1, max_size=5), st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_byte_mutations_of_valid_frames_only_raise_codec_error(
    batch: list[Message], data: st.DataObject
) -> None:
    frame = bytearray(encode_frame(batch))
    operation = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    position = data.draw(st.integers(0, len(frame) - 1))
    if operation == "flip":
        frame[position] ^= data.draw(st.integers(1, 255))
    elif operation == "truncate":
        del frame[position:]
    elif operation == "insert":
        frame[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    else:
        del frame[position]
    _decode_totally(bytes(frame))


def _paths(value: object, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [prefix]
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@given(st.lists(messages, min_size=1, max_size=4), st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_structural_mutations_of_valid_frames_only_raise_codec_error(
    batch: list[Message], data: st.DataObject
) -> None:
    """Replace one node of the decoded msgpack tree (a field, a ballot, a whole message...)."""
    tree = msgpack.unpackb(encode_frame(batch))
    path = data.draw(st.sampled_from(_paths(tree)[1:]))
    parent = tree
    for index in path[:-1]:
        parent = parent[index]
    parent[path[-1]] = data.draw(msgpack_values)
    _decode_totally(msgpack.packb(tree))


# --- encode_frames: batching under size limits -------------------------------------------------


def test_encode_frames_packs_everything_into_one_frame_when_it_fits() -> None:
    batch = [accept(instance=i) for i in range(100)]
    frames, rejected = encode_frames(batch)
    assert rejected == []
    assert len(frames) == 1
    assert frames[0][1] == 100
    assert decode_frame(frames[0][0]) == batch


def test_encode_frames_splits_by_size_and_count_and_keeps_order() -> None:
    batch = [accept(instance=i, payload="p" * 100) for i in range(50)]
    frames, rejected = encode_frames(batch, max_size=1000, max_messages=7)
    assert rejected == []
    assert all(len(frame) <= 1000 and count <= 7 for frame, count in frames)
    decoded = [m for frame, _ in frames for m in decode_frame(frame)]
    assert decoded == batch
    assert sum(count for _, count in frames) == 50


def test_encode_frames_rejects_only_the_message_that_cannot_fit() -> None:
    big = accept(instance=99, payload="x" * 5000)
    batch = [accept(instance=1), big, accept(instance=2)]
    frames, rejected = encode_frames(batch, max_size=1000)
    assert rejected == [big]
    assert [m for frame, _ in frames for m in decode_frame(frame)] == [batch[0], batch[2]]


def test_unencodable_message_is_a_local_error_and_is_isolated() -> None:
    bad = accept(payload="\ud800")  # a lone surrogate has no UTF-8 encoding
    with pytest.raises(LocalProtocolError):
        encode_frame([bad])
    with pytest.raises(LocalProtocolError):
        encode_frame(["not a message"])  # type: ignore[list-item]
    frames, rejected = encode_frames([accept(instance=1), bad, accept(instance=2)])
    assert rejected == [bad]
    assert [m.instance for frame, _ in frames for m in decode_frame(frame)] == [1, 2]


def test_every_message_type_has_distinct_small_frames() -> None:
    samples = [
        Accepted(group_id=1, src=1, dst=2, ballot=B, instance=10),
        Heartbeat(group_id=1, src=1, dst=2, ballot=B, chosen_upto=9, seq=4),
        LearnRequest(group_id=1, src=1, dst=2, first_instance=1, last_instance=9),
    ]
    for message in samples:
        assert len(encode_frame([message])) < 20


@pytest.mark.parametrize(
    "data",
    [
        raw_frame(GOOD, version="v" * 100_000),
        raw_frame(GOOD, version=b"v" * 100_000),
        raw_frame(["A" * 100_000, 1, 1, 2]),
        raw_frame([[list(range(10_000))], 1, 1, 2]),
    ],
    ids=["str-version", "bytes-version", "str-tag", "list-tag"],
)
def test_a_refusal_quotes_what_was_sent_at_a_bounded_size(data: bytes) -> None:
    """The refusal is logged and sent as the close reason: a 16 MiB value quoted whole would be
    a 16 MiB log line."""
    with pytest.raises(CodecError) as refused:
        decode_frame(data)
    assert len(str(refused.value)) < 120, str(refused.value)
