"""Applying chosen instances to state machines, exactly once per request id.

Runs on the storage writer thread, inside the transaction that also persists the Ready the
instances came from, so chosen marks, state machine effects, request results and the applied index
commit together: a crash can neither lose nor repeat an application.

Exactly-once: the first time a request id is applied, its result is stored in ``RequestResult``
with the instance it was applied in. The same request id chosen again later (a client retry that
raced with the original) finds that row and returns the stored result without applying. The rule
"a request id is a duplicate iff its row names an *earlier* instance" is what lets an in-memory
state machine replay the log from instance 1 on start and rebuild exactly the same state.
"""

from __future__ import annotations

import contextlib
import logging
import sysconfig
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connections, transaction
from django.utils import timezone

from consensus.core import ChosenEntry
from consensus.core.result_digest import DEFAULT_WINDOW, FAILED, ResultDigests
from consensus.models import AppliedIndex, RequestResult
from consensus.registry import registry
from consensus.request_ids import stored_id
from consensus.statemachine import ApplyContext, StateMachine, decode_result, portable_result
from consensus.storage.failures import StorageFailure, is_storage_failure, transaction_lost
from consensus.storage.pruning import prune_before
from consensus.storage.sql import raw_cursor

logger = logging.getLogger("consensus.runtime")

T = TypeVar("T")

_LOOKUP_CHUNK = 500
SLOW_APPLY_SECONDS = 1.0
"""A group's batch that takes longer to apply is logged, naming the state machine."""
SLOW_STATE_SECONDS = 0.5
"""A ``state_digest`` that takes longer is logged: every write of the node waited for it."""

RESERVED_PREFIX = "paxos:"
"""Request ids the runtime uses for its own markers; clients may not use them."""
BARRIER_PREFIX = "paxos:barrier:"
"""Read barriers through the log (``PaxosNode.log_barrier``): chosen like commands, never applied
to the state machine and never stored."""
STALL_SHARE = 1000
"""A state check waits at least this many times as long as the last one took, so that state
checks stall a node's writes for at most 1/STALL_SHARE of the time (``StateChecks``)."""
STATE_PREFIX = "paxos:state:"
"""State checks (``PAXOS_STATE_CHECK_INTERVAL``): every node takes its state machine's
``state_digest`` at the marker's position of the log; it is the marker's result, and goes into
the result digests the nodes compare (``consensus.core.result_digest``)."""
PRUNE_PREFIX = "paxos:prune:"
"""Pruning markers: the payload is a cutoff instance; every node drops the stored results below
it when it applies the marker, at the same position of the log (see storage/pruning.py)."""


class UnguardedBatchFailed(Exception):
    """A state machine's ``apply_batch`` raised where no savepoint guarded it
    (``apply_groups(guarded=False)``): roll back the transaction it ran in and apply again with
    ``guarded=True``. ``with_guard_on_failure`` does both."""


def with_guard_on_failure(attempt: Callable[[bool], T], using: str = "default") -> T:
    """``attempt(False)``, or ``attempt(True)`` if a state machine failed in it.

    ``attempt(guarded)`` opens the transaction it applies in and passes ``guarded`` on to
    ``Applier.apply_groups``. Why not a savepoint around every batch, always: SQLite copies
    every page a savepoint's statements touch into a statement journal (a temporary file, made
    and deleted each time), which was about a fifth of a node's application work: 38.5 against
    29.8 µs of CPU per KV put applied with 4 groups of 32 puts per turn (medians of 5
    interleaved runs). A failing state machine is rare, so the common path takes no savepoint;
    when one raises, ``UnguardedBatchFailed`` leaves ``attempt``'s transaction, which undoes
    everything in it (other groups' batches and the turn's votes too), and the second attempt
    does it all again under savepoints, applying the failing batch command by command.

    Unless the database connection itself was lost (the transaction's rollback failed, so
    Django dropped the connection): that is a storage failure, not a state machine's, and it
    is raised as one. The second attempt would open a new connection and go on as if nothing
    had happened, or not, depending on where in the turn the loss struck; a node stops on a
    storage failure instead (``PaxosNode._fail``), the same way every time.
    """
    try:
        return attempt(False)
    except UnguardedBatchFailed as failure:
        if connections[using].connection is None and failure.__cause__ is not None:
            raise failure.__cause__ from None
        logger.info("%s; applying again with savepoints", failure)
        return attempt(True)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a client gets back for one command."""

    group_id: int
    request_id: str
    instance: int
    result: Any
    duplicate: bool = False
    payload: str | None = None
    """The command applied, where this outcome is its first application (the waiters check
    that it is the command their caller sent under that request id); None otherwise."""


def raised_at(error: BaseException) -> str:
    """Where ``error`` was raised, as ``file:line in function`` (the innermost frame): enough to
    find a bug in a state machine without a traceback per failed command, repeated at every
    replay."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "an unknown place"
    ours = [frame for frame in frames if not _library_file(frame.filename)]
    frame = (ours or frames)[-1]  # the state machine's line, not Django's or the stdlib's
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


_LIBRARY_FOLDERS = tuple(
    {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], "site-packages"}
)


def _library_file(filename: str) -> bool:
    return any(folder in filename for folder in _LIBRARY_FOLDERS)


NOT_TAKEN = object()
"""A state check this node did not take (catching up, or ``state_digest`` failed)."""


class FailedResult(dict):
    """The ``{"error": ...}`` result of a command whose ``apply`` raised: a plain dict to the
    client, one fixed token to the result digests (its text may quote a database's words)."""


class Applier:
    def __init__(
        self,
        machines: dict[int, StateMachine],
        using: str = "default",
        digest_window: int = DEFAULT_WINDOW,
    ) -> None:
        self.machines = machines
        self.using = using
        self.digests = ResultDigests(digest_window)
        self.state_checks_from: dict[int, int] = {}
        """Group -> the first instance whose state checks this node takes: below it it is
        catching up (replaying history, or far behind), and a full scan of the state at every
        old check would cost it minutes; such a window goes unreported instead. Set by the
        runtime before it hands the applications over."""
        self.state_seconds: dict[int, float] = {}
        """Group -> how long its last ``state_digest`` took, on the writer thread: the leader
        spaces its state checks by it (``StateChecks``)."""

    def resume_digest(self, group_id: int, applied: int) -> None:
        """Resume the group's result digest where its applied index's row left it (call it
        before applying, with the applied index applications continue from)."""
        row = (
            AppliedIndex.objects.using(self.using)
            .filter(group_id=group_id)
            .values_list("digest_from", "digest", "digest_window")
            .first()
        )
        if row is None:
            self.digests.resume(group_id, applied, None, 0)
        else:
            self.digests.resume(group_id, applied, (row[0], row[1]), row[2])

    def lookup(self, group_id: int, request_id: str) -> Outcome | None:
        row = (
            RequestResult.objects.using(self.using)
            .filter(group_id=group_id, request_id=request_id)
            .values_list("instance", "result")
            .first()
        )
        if row is None:
            return None
        return Outcome(group_id, request_id, row[0], decode_result(row[1]), duplicate=True)

    def apply(
        self,
        group_id: int,
        entries: Sequence[ChosenEntry],
        *,
        replay_seen: dict[str, int] | None = None,
    ) -> list[Outcome]:
        """Apply ``entries`` (consecutive instances) and record the applied index.

        With ``replay_seen`` it re-runs instances an in-memory state machine applied before a
        restart: duplicates are decided from ``replay_seen`` (request id -> first instance, kept
        by the caller across calls, pruned by the same markers) instead of the stored results,
        which are left alone, so the replay takes exactly the decisions the first run took.
        """
        if replay_seen is None:
            return self.apply_groups([(group_id, entries)])
        if not entries:
            return []
        known: dict[str, tuple[int, Any]] = {
            command.request_id: (replay_seen[command.request_id], None)
            for entry in entries
            for command in entry.value
            if command.request_id in replay_seen
        }
        outcomes, _rows, cutoff = self._run(group_id, entries, known, replay=True, guarded=True)
        replay_seen.update((rid, first[0]) for rid, first in known.items())
        if cutoff:
            for rid in [r for r, i in replay_seen.items() if i < cutoff]:
                del replay_seen[rid]
        return outcomes

    def apply_groups(
        self,
        applying: Sequence[tuple[int, Sequence[ChosenEntry]]],
        on_outcomes: Callable[[list[Outcome]], object] | None = None,
        *,
        guarded: bool = True,
    ) -> list[Outcome]:
        """``apply`` for the chosen instances of several groups at once (one turn of a node).

        The look-up of stored results, the new result rows and the applied indexes take one
        statement each for all the groups together, instead of one each per group: with several
        groups the per-statement cost was a large part of a turn.

        ``on_outcomes`` gets the outcomes as soon as the state machines returned them, before
        the result rows and the applied index are written: the clients waiting for them need
        not wait for bookkeeping that commits in the same transaction anyway.

        ``guarded=False`` applies each batch without a savepoint and raises
        ``UnguardedBatchFailed`` if one fails (see ``with_guard_on_failure``). A turn with an
        in-memory state machine is always guarded: a second attempt would apply its commands to
        memory twice."""
        merged: dict[int, list[ChosenEntry]] = {}
        for group_id, entries in applying:  # a group given twice: one run, in log order
            merged.setdefault(group_id, []).extend(entries)
        merged = {group_id: entries for group_id, entries in merged.items() if entries}
        if not merged:
            return []
        guarded = guarded or not all(self.machines[group_id].durable for group_id in merged)
        known = self._known_results(merged)
        outcomes: list[Outcome] = []
        rows: list[tuple[int, str, int, str]] = []
        cutoffs: dict[int, int] = {}
        digests_before = self.digests.save(merged)
        for group_id, entries in merged.items():
            try:
                group_outcomes, group_rows, cutoff = self._run(
                    group_id, entries, known.get(group_id, {}), replay=False, guarded=guarded
                )
            except UnguardedBatchFailed:
                self.digests.restore(digests_before)  # the turn is applied again, guarded
                raise
            outcomes.extend(group_outcomes)
            rows.extend((group_id, *row) for row in group_rows)
            if cutoff:
                cutoffs[group_id] = cutoff
        if on_outcomes is not None and outcomes:
            on_outcomes(outcomes)
        # Pruning first, then only the rows a marker of the turn would not have deleted: the
        # same rows as applying the turn's instances one at a time, whatever a turn holds.
        for group_id, cutoff in cutoffs.items():
            prune_before(group_id, cutoff, self.using)
        rows = [row for row in rows if row[2] >= cutoffs.get(row[0], 0)]
        self._record(
            rows, [(group_id, entries[-1].instance) for group_id, entries in merged.items()]
        )
        return outcomes

    def _run(
        self,
        group_id: int,
        entries: Sequence[ChosenEntry],
        known: dict[str, tuple[int, Any]],
        *,
        replay: bool,
        guarded: bool,
    ) -> tuple[list[Outcome], list[tuple[str, int, str]], int]:
        """Apply one group's entries: the outcomes, the result rows to store and the highest
        pruning cutoff met. ``known`` (request id -> first instance and result) is updated."""
        # Decide first what to apply (skipping repeats of a request id), then apply it all in
        # one apply_batch call, then build the outcomes in log order.
        plan: list[tuple[str, int, int | None]] = []  # (request id, instance, batch position)
        batch: list[tuple[str, ApplyContext]] = []
        fresh: set[str] = set()
        markers: dict[str, int] = {}  # pruning marker -> its cutoff (the marker's result)
        cuts: list[tuple[int, int]] = []  # each state check: (its place in the batch, instance)
        cutoff = 0
        for entry in entries:
            for command in entry.value:
                request_id = command.request_id
                if request_id.startswith(RESERVED_PREFIX):
                    if request_id.startswith(PRUNE_PREFIX):
                        markers[request_id] = _parse_cutoff(command.payload)
                        cutoff = max(cutoff, markers[request_id])
                        for rid in [r for r, (i, _res) in known.items() if i < cutoff]:
                            del known[rid]
                            fresh.discard(rid)
                    elif request_id.startswith(STATE_PREFIX):
                        cuts.append((len(batch), entry.instance))
                    plan.append((request_id, entry.instance, None))
                    continue
                first = known.get(request_id)
                if first is not None and first[0] < entry.instance:
                    plan.append((request_id, entry.instance, None))
                    continue
                known[request_id] = (entry.instance, None)
                if first is None:
                    fresh.add(request_id)
                plan.append((request_id, entry.instance, len(batch)))
                batch.append((command.payload, ApplyContext(group_id, entry.instance, request_id)))
        machine = self.machines[group_id]
        started = time.monotonic()
        if cuts:
            results, states = self._apply_with_state_checks(
                machine, batch, cuts, guarded=guarded, skip=replay or not self.digests.window
            )
        else:
            results, states = self._apply_batch(machine, batch, guarded=guarded), iter(())
        elapsed = time.monotonic() - started
        if elapsed > SLOW_APPLY_SECONDS:
            logger.warning(
                'group %s: the state machine "%s" took %.1f s to apply %s command(s) (instances '
                "%s..%s); apply must be quick: the node's votes wait for the same transaction",
                group_id,
                registry.name_of(machine),
                elapsed,
                len(batch),
                entries[0].instance,
                entries[-1].instance,
            )
        outcomes: list[Outcome] = []
        rows: list[tuple[str, int, str]] = []
        digested: list[tuple[int, bytes | None]] = []
        checked: set[int] = set()  # instances whose state check digested the state
        for request_id, instance, position in plan:
            if position is not None:
                result, encoded = portable_result(results[position])
                failed = type(results[position]) is FailedResult
                digested.append((instance, FAILED if failed else encoded.encode()))
                known[request_id] = (instance, result)
                payload = batch[position][0]
                outcomes.append(Outcome(group_id, request_id, instance, result, payload=payload))
                if request_id in fresh and not replay:
                    rows.append((stored_id(request_id), instance, encoded))
            elif request_id.startswith(STATE_PREFIX):
                state = next(states)
                if state is NOT_TAKEN:
                    digested.append((instance, None))  # its window goes unreported
                    state = None
                elif state is not None:
                    digested.append((instance, b"state\x00" + state.encode(errors="surrogatepass")))
                    checked.add(instance)
                outcomes.append(Outcome(group_id, request_id, instance, state))
            elif request_id.startswith(RESERVED_PREFIX):
                outcomes.append(Outcome(group_id, request_id, instance, markers.get(request_id)))
            else:
                first_instance, first_result = known[request_id]
                outcomes.append(
                    Outcome(group_id, request_id, first_instance, first_result, duplicate=True)
                )
        self.digests.feed(
            group_id,
            (entry.instance for entry in entries),
            digested,
            ends={instance for _position, instance in cuts},
            checked=checked,
        )
        return outcomes, rows, cutoff

    def _apply_with_state_checks(
        self,
        machine: StateMachine,
        batch: list[tuple[str, ApplyContext]],
        cuts: list[tuple[int, int]],
        *,
        guarded: bool,
        skip: bool,
    ) -> tuple[list[Any], Iterator[object]]:
        """Apply ``batch`` in pieces, taking the machine's ``state_digest`` at each cut (a
        state check's place among the commands): the results, and the states in order (a
        text, None for a machine without one, ``NOT_TAKEN``)."""
        results: list[Any] = []
        states: list[object] = []
        start = 0
        taken_from = self.state_checks_from.get(machine.group_id, 0)
        for cut, instance in cuts:
            results.extend(self._apply_batch(machine, batch[start:cut], guarded=guarded))
            states.append(NOT_TAKEN if skip or instance < taken_from else self._state(machine))
            start = cut
        results.extend(self._apply_batch(machine, batch[start:], guarded=guarded))
        return results, iter(states)

    def _state(self, machine: StateMachine) -> object:
        """``machine.state_digest()``: a text, None (the machine has none), or ``NOT_TAKEN``
        if it raised or returned something else (logged): in a savepoint, so that a database
        error cannot abort the turn's transaction, and nothing of it may fail the turn."""
        savepoint = (
            transaction.atomic(using=self.using) if machine.durable else contextlib.nullcontext()
        )
        started = time.monotonic()
        try:
            with self._user_code(machine.group_id, "a state check"):
                with savepoint:
                    state = machine.state_digest()
                if state is not None and not isinstance(state, str):
                    raise TypeError(f"state_digest returned {type(state).__name__}, not a str")
        except StorageFailure:
            raise
        except Exception as error:  # noqa: BLE001 - user code
            logger.warning(
                "group %s: the state machine's state_digest failed (%r at %s); this state check "
                "is not compared",
                machine.group_id,
                error,
                raised_at(error),
            )
            return NOT_TAKEN
        finally:
            self._timed_state(machine.group_id, time.monotonic() - started)
        return state

    @contextlib.contextmanager
    def _user_code(
        self,
        group_id: int,
        what: str,
        *,
        check_on_error: bool = True,
        check_on_success: bool = True,
    ) -> Iterator[None]:
        """Around a state machine's code that runs in the turn's transaction (``what``, for the
        message): raise ``StorageFailure`` if it raised the database's error and not the
        command's, or if the turn's transaction is gone when it ends (see
        ``consensus.storage.failures``); any other error goes on as it is, for the caller to
        make it the command's. Put it outside the block's savepoint, so that the check comes
        after the savepoint's rollback or release and before the turn runs another statement;
        a caller that catches the block's errors must let ``StorageFailure`` through.

        ``check_on_error=False``: not the transaction after an unguarded batch failed:
        PostgreSQL aborts it for any error, and the caller rolls it back and tries again
        anyway. ``check_on_success=False``: not after each command of an in-memory machine,
        which checks once after the batch (``_check_transaction``)."""
        try:
            yield
        except Exception as error:
            if is_storage_failure(error):
                raise StorageFailure(
                    f"group {group_id}: the database failed while applying {what} ({error!r}); "
                    "nothing of the turn is kept, and a restart applies it again"
                ) from error
            if check_on_error:
                self._check_transaction(group_id, what)
            raise
        if check_on_success:
            self._check_transaction(group_id, what)

    def _check_transaction(self, group_id: int, what: str) -> None:
        if transaction_lost(self.using):
            raise StorageFailure(
                f"group {group_id}: the database ended the turn's transaction while applying "
                f"{what} (did the state machine catch a database error?); nothing of the turn "
                "is kept, and a restart applies it again"
            )

    def _timed_state(self, group_id: int, seconds: float) -> None:
        self.state_seconds[group_id] = seconds
        if seconds > SLOW_STATE_SECONDS:
            logger.warning(
                "group %s: the state machine's state_digest took %.1f s on the writer thread (this "
                "node's writes waited for it); the leader spaces its state checks to keep them "
                "under %g%% of the time, see PAXOS_STATE_CHECK_INTERVAL",
                group_id,
                seconds,
                100 / STALL_SHARE,
            )

    def _apply_batch(
        self, machine: StateMachine, batch: list[tuple[str, ApplyContext]], *, guarded: bool
    ) -> list[Any]:
        """``apply_batch`` inside a savepoint. If it raises (a database error would otherwise
        leave the transaction aborted and stop the group on every node at the same instance),
        roll it back and apply the commands one by one, each in its own savepoint; a command
        that raises gets ``{"error": ...}`` as its result, identically on every node.

        Unguarded, without the savepoint: a failure raises ``UnguardedBatchFailed`` instead.

        An in-memory machine with the default ``apply_batch`` goes one by one from the start:
        a savepoint cannot take back what a failed batch already did to memory, and commands
        applied twice, a number that depends on how the instances were batched on each node,
        would make the nodes disagree."""
        if not batch:
            return []
        if not machine.durable and type(machine).apply_batch is StateMachine.apply_batch:
            return self._apply_one_by_one(machine, batch)
        group_id, what = batch[0][1].group_id, _instances(batch)
        if not guarded:
            try:
                with self._user_code(group_id, what, check_on_error=False):
                    return machine.apply_batch(batch)
            except StorageFailure:
                raise
            except Exception as error:  # noqa: BLE001 - user code
                raise UnguardedBatchFailed(
                    f"group {group_id}: apply_batch failed ({error!r})"
                ) from error
        try:
            with self._user_code(group_id, what), transaction.atomic(using=self.using):
                return machine.apply_batch(batch)
        except StorageFailure:
            raise
        except Exception as error:  # noqa: BLE001 - user code
            logger.warning(
                "group %s: apply_batch failed (%r); applying one command at a time",
                batch[0][1].group_id,
                error,
            )
        return self._apply_one_by_one(machine, batch)

    def _apply_one_by_one(
        self, machine: StateMachine, batch: list[tuple[str, ApplyContext]]
    ) -> list[Any]:
        """``apply`` for each command, a failure becoming that command's result; a durable
        machine's commands each in a savepoint, so that a failed one leaves nothing behind."""
        results = []
        durable = machine.durable
        for command, context in batch:
            savepoint = (
                transaction.atomic(using=self.using) if durable else contextlib.nullcontext()
            )
            what = f"instance {context.instance}"
            # Durable: checked after each command, before the next one's savepoint (it would
            # commit alone). In memory: once after the batch, below.
            try:
                with self._user_code(context.group_id, what, check_on_success=durable), savepoint:
                    results.append(machine.apply(command, context))
            except StorageFailure:
                raise
            except Exception as error:  # noqa: BLE001 - user code
                logger.warning(
                    "group %s instance %s: the state machine failed on %r: %r at %s",
                    context.group_id,
                    context.instance,
                    context.request_id,
                    error,
                    raised_at(error),
                )
                results.append(FailedResult(error=f"{type(error).__name__}: {error}"))
        if batch and not durable:  # an in-memory machine: once, it should not touch the database
            self._check_transaction(batch[0][1].group_id, _instances(batch))
        return results

    def _known_results(
        self, applying: dict[int, list[ChosenEntry]]
    ) -> dict[int, dict[str, tuple[int, Any]]]:
        """Stored first results of the request ids, by group (raw SQL: this runs per commit).

        One query for all groups: ``group_id IN (...) AND request_id IN (...)`` may also return
        another group's row for an id, which the pair check drops."""
        wanted = {
            (group_id, stored_id(command.request_id)): command.request_id
            for group_id, entries in applying.items()
            for entry in entries
            for command in entry.value
            if not command.request_id.startswith(RESERVED_PREFIX)
        }
        known: dict[int, dict[str, tuple[int, Any]]] = {}
        if not wanted:
            return known
        group_ids = sorted({group_id for group_id, _rid in wanted})
        request_ids = sorted({rid for _group_id, rid in wanted})
        groups_sql = ", ".join(["%s"] * len(group_ids))
        with raw_cursor(self.using) as cursor:
            for start in range(0, len(request_ids), _LOOKUP_CHUNK):
                chunk = request_ids[start : start + _LOOKUP_CHUNK]
                cursor.execute(
                    "SELECT group_id, request_id, instance, result FROM consensus_requestresult "
                    f"WHERE group_id IN ({groups_sql}) "
                    f"AND request_id IN ({', '.join(['%s'] * len(chunk))})",
                    [*group_ids, *chunk],
                )
                for group_id, key, instance, result in cursor.fetchall():
                    request_id = wanted.get((group_id, key))
                    if request_id is not None:
                        known.setdefault(group_id, {})[request_id] = (
                            instance,
                            decode_result(result),
                        )
        return known

    def _record(
        self, rows: list[tuple[int, str, int, str]], applied: list[tuple[int, int]]
    ) -> None:
        """Store first results and the applied indexes (raw SQL, same on SQLite and PostgreSQL)."""
        with raw_cursor(self.using) as cursor:
            if rows:
                now = connections[self.using].ops.adapt_datetimefield_value(timezone.now())
                cursor.executemany(
                    "INSERT INTO consensus_requestresult "
                    "(group_id, request_id, instance, result, created_at) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (group_id, request_id) DO NOTHING",
                    [
                        (group_id, rid, instance, result, now)
                        for group_id, rid, instance, result in rows
                    ],
                )
            cursor.executemany(
                "INSERT INTO consensus_appliedindex "
                "(group_id, applied, digest_from, digest, digest_window) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (group_id) DO UPDATE SET "
                "applied = excluded.applied, digest_from = excluded.digest_from, "
                "digest = excluded.digest, digest_window = excluded.digest_window",
                [
                    (group_id, index, *self.digests.running(group_id), self.digests.window)
                    for group_id, index in applied
                ],
            )


def _instances(batch: list[tuple[str, ApplyContext]]) -> str:
    first, last = batch[0][1].instance, batch[-1][1].instance
    return f"instance {first}" if first == last else f"instances {first}..{last}"


def _parse_cutoff(payload: str) -> int:
    try:
        return max(0, int(payload))
    except ValueError:
        return 0
