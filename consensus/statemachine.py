"""What user code implements: a deterministic state machine fed the chosen commands of a group.

Every node applies the same commands in the same order, so ``apply`` must be deterministic: no
clock, no randomness, no IO other than its own database rows. Its return value is the result the
client gets (anything JSON-serializable).

Two kinds:
- ``durable = True`` (the default): the state lives in the node's database (like the KV store's
  tables). ``apply`` runs inside the transaction that also records the applied index, so a crash
  can neither lose nor repeat an application.
- ``durable = False``: the state lives in memory and is rebuilt on start by replaying the chosen
  log from the first instance.

A durable machine writes with the ORM or ``connection.cursor()`` as any Django code does. Its
``apply_batch`` runs for every batch on every node, so the KV store uses ``raw_cursor()``: the
driver's own cursor on the same connection and transaction, about ten times cheaper a statement
than Django's wrapper (see consensus/storage/sql.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from hashlib import blake2b
from typing import Any, ClassVar

import orjson

from consensus.storage.sql import raw_cursor as raw_cursor  # re-exported for state machines

logger = logging.getLogger(__name__)


class QueryError(ValueError):
    """A query the state machine refuses (the client gets it as a 400 error)."""


@dataclass(frozen=True, slots=True)
class ApplyContext:
    group_id: int
    instance: int
    request_id: str


class StateMachine:
    """Subclass, implement ``apply``, and register it (see ``consensus.registry``)."""

    durable: ClassVar[bool] = True

    def __init__(self, group_id: int) -> None:
        self.group_id = group_id

    def apply(self, command: str, context: ApplyContext) -> Any:
        """Apply one chosen command; return its result (JSON: dicts, lists, strings, numbers).

        An exception becomes the command's result, ``{"error": ...}``, on every node alike, so
        it must be one every node meets at this command: bad input, a unique constraint. An
        error of the database itself (a full disk, a lost connection, a cancelled statement)
        is this node's alone: the node stops instead and applies the command again once it is
        restarted (``consensus.storage.failures``). So do not catch database errors and go on
        writing: SQLite may have rolled the whole transaction back already."""
        raise NotImplementedError

    def apply_batch(self, commands: Sequence[tuple[str, ApplyContext]]) -> list[Any]:
        """Apply several commands in order; return their results in order.

        The runtime calls this with every command of the instances it applies at once. The
        default calls ``apply`` for each; override it to use bulk queries, as the KV store
        does. The results must be exactly what one ``apply`` after another would return.

        If it raises, the runtime rolls its work back and applies the commands one by one with
        ``apply``, a command that raises getting ``{"error": ...}`` as its result: a chosen
        command is applied whatever happens, or the group would stop on every node. (For a
        durable machine the whole transaction is rolled back and applied again, this batch
        under a savepoint; see ``consensus.runtime.apply.with_guard_on_failure``. So keep
        state in the database, not in attributes, or it may see a batch twice.)

        An in-memory machine (``durable = False``) that keeps the default gets ``apply`` for
        each command directly, a failure becoming that command's result: memory cannot be
        rolled back. One that overrides this must change nothing when it raises: the commands
        are then applied again one by one, and work done twice would differ between nodes,
        which batch the same commands differently.
        """
        return [self.apply(command, context) for command, context in commands]

    def validate(self, text: str) -> None:
        """Optional: refuse a command or query before it is proposed or run.

        Called on the node a client's request reaches (REST's ``commands/`` and ``query/``
        routes, the client stream), never while applying. Raise ``ValueError`` (or
        ``QueryError``) with the reason and the client gets a 400 with it; nothing enters the
        log. Use it for limits that belong to your API (sizes, required fields): a limit that
        is a setting cannot live in ``apply``, since a node whose setting differs would apply
        the same command differently. ``apply`` must still cope with any text: a command
        forwarded by a node of an earlier release, or submitted through ``PaxosNode.submit``,
        was never checked. The KV store checks its keys and values here. By default every
        text passes.
        """

    def query(self, queries: Sequence[str]) -> list[Any]:
        """Optional: answer read-only ``queries`` from the applied state, one result per query.

        The pipelined client stream (``/ws/client/``) calls it outside the apply transaction,
        after a read barrier when the client asked for a linearizable read: for a durable
        machine on a worker thread with its own database connection, for an in-memory one on
        the writer thread between applications (no locks needed). It must not write. Raise
        ``QueryError`` for a query it cannot answer; by default the machine answers none.
        """
        raise QueryError(f"{type(self).__name__} does not answer queries")

    def state_digest(self) -> str | None:
        """Optional: a digest of the whole state, the same on every node whose state is the same.

        Every ``PAXOS_STATE_CHECK_INTERVAL`` seconds the leader of a group puts a marker in its
        log, and every node calls this at that position of the log: on the writer thread,
        inside the transaction, after every earlier command and before any later one. The nodes
        compare the answers as they compare results (README "Nodes whose state machines
        differ"), so this sees what results may not show: a put that left another value on one
        node. It reads the whole state: it must not write, and should cost no more than one
        pass over the state (``rows_digest`` combines rows in any order, so the query needs no
        ORDER BY, whose order also differs between databases). None (the default): the state
        is not compared, only the results."""
        return None

    def snapshot(self) -> bytes | None:
        """Optional: the whole state, for log compaction (not used yet)."""
        return None

    def restore(self, snapshot: bytes) -> None:
        """Optional: the inverse of ``snapshot``."""
        raise NotImplementedError


def rows_digest(rows: Iterable[Sequence[Any]]) -> str:
    """A digest of ``rows`` that does not depend on their order: the count and the sum of each
    row's 128-bit hash. For ``state_digest``.

    Values are strings, numbers, None, booleans (as 0/1: SQLite returns integers for them),
    bytes (as hex) and Decimals (as text). Databases return some types differently (a datetime
    is text from SQLite's cursor, a ``datetime`` from PostgreSQL's; a decimal a float or a
    ``Decimal``): if the nodes of a cluster run different databases, select such columns cast
    to text in a fixed format."""
    count = total = 0
    for row in rows:
        values = [int(value) if type(value) is bool else value for value in row]
        encoded = orjson.dumps(values, default=_canonical_value)
        hashed = blake2b(encoded, digest_size=16).digest()
        total = (total + int.from_bytes(hashed, "big")) & _ROWS_MASK
        count += 1
    return f"{count} rows {total:032x}"


_ROWS_MASK = 2**128 - 1


def _canonical_value(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"rows_digest cannot take a {type(value).__name__}")


class LogOnlyStateMachine(StateMachine):
    """Keeps nothing: the chosen log itself is the state. The result is the instance number."""

    def apply(self, command: str, context: ApplyContext) -> Any:
        return {"instance": context.instance}


class CallbackStateMachine(StateMachine):
    """Adapter for the seed's ``PaxosCallback`` style: a class with ``callback(self, msg)``.

    Subclass and implement ``callback``; whatever it returns (often nothing, as in the seed) is the
    client's result. Its state is in memory, so it is rebuilt by replaying the log on start.
    """

    durable: ClassVar[bool] = False

    def callback(self, msg: str) -> Any:
        raise NotImplementedError

    def apply(self, command: str, context: ApplyContext) -> Any:
        return self.callback(command)


def validation_refusal(machine: StateMachine, group_id: int, text: str) -> tuple[int, str] | None:
    """``machine.validate(text)`` as the HTTP status and reason of its refusal; None if it
    passes. A ``ValueError`` is a 400; an error that carries its own ``status_code`` and
    ``message`` (the REST API's ``ApiError``, which the KV store raises) keeps them; anything
    else is the machine's bug, logged, and a 500 for that request only."""
    try:
        machine.validate(text)
    except ValueError as error:
        return 400, str(error)
    except Exception as error:  # noqa: BLE001 - user code
        status, message = getattr(error, "status_code", None), getattr(error, "message", None)
        if isinstance(status, int) and isinstance(message, str):
            return status, message
        logger.exception("group %s: the state machine's validate failed", group_id)
        return 500, f"the state machine's validate failed: {error!r}"
    return None


def portable_result(result: Any) -> tuple[Any, str]:
    """A state machine's result as every node answers and stores it: ``(result, its JSON)``.

    Results are kept as JSON for retries with the same request id, so a retry must get what the
    first caller got: the caller gets the JSON's value (a tuple as a list, a datetime as its
    ISO text, a Decimal as its text). orjson first (this runs for every command on every node);
    what it refuses (integer dict keys, integers beyond 64 bits) goes through ``json``. What
    neither takes, or what a client could not read back (a set, bytes, an object, NaN, a lone
    surrogate), becomes an error result naming the problem: it used to be stored as its
    ``str()``, which for an object differs on every node (its address), and it stopped a
    client stream's answers. Nothing a result does may raise out of here: that would fail the
    node's whole turn."""
    try:
        text = orjson.dumps(result, default=_decimal_as_text).decode()
        return orjson.loads(text), text
    except (TypeError, orjson.JSONEncodeError):
        pass
    except Exception:  # noqa: BLE001 - user objects (a dict whose items() raises...)
        return _not_json(result)
    try:
        text = json.dumps(result, separators=(",", ":"), allow_nan=False, default=_decimal_as_text)
        orjson.loads(text)  # what the clients parse with: a lone surrogate's escape fails here
    except Exception:  # noqa: BLE001 - TypeError, ValueError, RecursionError, user objects
        return _not_json(result)
    return json.loads(text), text  # the exact value (orjson reads huge integers as floats)


def _decimal_as_text(value: Any) -> str:
    """A ``Decimal`` (a ``DecimalField``'s value, easy to return by accident) as its text."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _not_json(result: Any) -> tuple[Any, str]:
    error = {
        "error": f"the state machine's result ({_what_is_not_json(result)}) is not JSON (return "
        "dicts, lists, strings, numbers, booleans or None; no NaN, no lone surrogates)"
    }
    logger.warning("%s", error["error"])
    return error, orjson.dumps(error).decode()


def _what_is_not_json(result: Any, depth: int = 0) -> str:
    """``a set``, or where the culprit sits: ``a set in a dict`` (the dict is fine, its item is
    not). Depth-first, as the encoders meet it; an unreadable structure names its top."""
    top = _a(type(result).__name__)
    if isinstance(result, str):
        return "a lone surrogate" if not _valid_text(result) else top
    if depth > 20 or not isinstance(result, dict | list | tuple):
        return top
    try:
        items = [*result.keys(), *result.values()] if isinstance(result, dict) else list(result)
        for item in items:
            if isinstance(item, int | float | bool | Decimal | None):
                continue
            if isinstance(item, str) and _valid_text(item):
                continue
            inner = _what_is_not_json(item, depth + 1)
            if inner != _a(type(item).__name__) or not isinstance(item, dict | list | tuple):
                return f"{inner} in {top}"
    except Exception:  # noqa: BLE001 - user objects whose keys() or iteration raise
        return top
    return top


def _a(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_result(result: Any) -> str:
    """The JSON a result is stored as (``portable_result``)."""
    return portable_result(result)[1]


def decode_result(text: str) -> Any:
    """Only duplicates need it (rare), so the exact parser: orjson reads huge integers as floats."""
    return json.loads(text) if text else None
