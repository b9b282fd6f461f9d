"""Linearizability of a history of register operations, checked per key.

The search is Wing & Gong's, with Lowe's memoization (the algorithm of Porcupine and Knossos'
``wgl``): walk the history's call/return events in time order; at a call, try to linearize that
op now (the model must accept its output in the current state); at a return whose op was not yet
linearized, backtrack. A ``(set of linearized ops, state)`` pair seen before is never explored
again. Registers are independent, so the history is split by key (P-compositionality) and each
key is searched on its own.

Indeterminate ops (``info``) have no return event: they may take effect at any point after their
invocation, or never (linearizing one after every other op is the same as "never"). Their output
is unknown, so the model accepts them in any state. Failed ops (``fail``) never happened and are
dropped, as are indeterminate reads (they changed nothing and nobody saw their result).

Model (``kvstore.statemachines.KVStateMachine``): state is the value, None when absent.
``put v`` sets it; ``delete`` clears it; ``get`` must return the state; ``cas e->v`` succeeds iff
the state equals ``e`` (None matches absent), and a failed cas reports the current state.
A delete's "was anything deleted" flag is not checked (the KV API does not always report it).

Pruning (sound, and what keeps many indeterminate writes cheap; values the workloads write are
unique): an indeterminate put or cas whose value no other op writes

- and no determinate op observed can be dropped: nobody saw it take effect, and every
  determinate op that follows it in any linearization is either a blind write or would have
  observed its value;
- and some determinate op observed (a read of it, a cas that expected it or failed on it) must
  have taken effect before the first such observer returned: it gets that return time instead of
  an open end, so it no longer stays concurrent with the rest of the history.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .history import FAIL, INFO, OK, UNKNOWN, Op

INFINITY = float("inf")
VALID, INVALID, UNKNOWN_VERDICT = "valid", "invalid", "unknown"


# --------------------------------------------------------------------------- the model


def register_step(state: str | None, op: Op) -> tuple[bool, str | None]:
    """(does the model accept ``op`` with its recorded output in ``state``, the next state)."""
    f = op.f
    determinate = op.type == OK
    if f == "get":
        return (not determinate or op.output == state), state
    if f == "put":
        return True, op.value
    if f == "delete":
        return True, None
    if f == "cas":
        hit = state == op.expected
        if not determinate:
            return True, (op.value if hit else state)
        succeeded, current = op.output
        if succeeded:
            return hit, op.value
        return (not hit) and (current is UNKNOWN or current == state), state
    raise ValueError(f"unknown op {f!r}")


# --------------------------------------------------------------------------- results


@dataclass
class KeyResult:
    key: str
    verdict: str
    ops: int
    indeterminate: int
    pruned: int
    seconds: float
    explanation: str = ""


@dataclass
class CheckResult:
    verdict: str
    keys: list[KeyResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def valid(self) -> bool:
        return self.verdict == VALID

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys if k.verdict != VALID]

    def summary(self) -> str:
        lines = [
            f"linearizability: {self.verdict} ({len(self.keys)} keys, "
            f"{sum(k.ops for k in self.keys)} ops checked, {self.seconds:.2f}s)"
        ]
        for failure in self.failures[:5]:
            lines.append(f"  key {failure.key}: {failure.verdict}\n{failure.explanation}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the search


def prune(ops: Sequence[Op]) -> tuple[list[Op], int]:
    """Drop failed ops, indeterminate reads, and unobservable indeterminate writes; bound the
    indeterminate writes that were observed (see the module docstring)."""
    kept = [op for op in ops if op.type in (OK, INFO) and not (op.type == INFO and op.f == "get")]
    written: Counter[str | None] = Counter()
    first_seen: dict[str | None, int] = {}
    for op in kept:
        if op.f in ("put", "cas"):
            written[op.value] += 1
        if op.type != OK:
            continue
        if op.f == "get":
            seen = op.output
        elif op.f == "cas":
            succeeded, current = op.output
            seen = op.expected if succeeded else current
        else:
            continue
        assert op.ret is not None
        first_seen[seen] = min(first_seen.get(seen, op.ret), op.ret)
    result = []
    for op in kept:
        if op.type == INFO and op.f in ("put", "cas") and written[op.value] == 1:
            if op.value not in first_seen:
                continue  # nobody saw it: as if it never happened
            # Its value (written by no one else) was seen by an op that returned at
            # first_seen: it took effect before then, like an op that returned then.
            op = replace(op, ret=max(first_seen[op.value], op.call))
        result.append(op)
    return result, len(ops) - len(result)


def check_key(
    key: str,
    ops: Sequence[Op],
    step: Callable[[Any, Op], tuple[bool, Any]] = register_step,
    initial: Any = None,
    deadline: float | None = None,
) -> KeyResult:
    started = time.perf_counter()
    checked, pruned = prune(ops)
    info = sum(1 for op in checked if op.type == INFO)
    verdict, explanation = _wgl(checked, step, initial, deadline)
    return KeyResult(
        key=key,
        verdict=verdict,
        ops=len(checked),
        indeterminate=info,
        pruned=pruned,
        seconds=time.perf_counter() - started,
        explanation=explanation,
    )


def _wgl(
    ops: Sequence[Op],
    step: Callable[[Any, Op], tuple[bool, Any]],
    initial: Any,
    deadline: float | None,
) -> tuple[str, str]:
    if not ops:
        return VALID, ""
    # Events: (time, 0 = call / 1 = return, op). At equal times calls sort first, so two ops that
    # touch at one instant count as concurrent (the permissive reading).
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((INFINITY if op.ret is None else op.ret, 1, i))
    events.sort()
    size = len(events)
    # A doubly linked list over nodes 1..size; node 0 is the head; -1 ends it.
    nxt = [*range(1, size + 1), -1]
    nxt[size] = -1
    prv = [-1, *range(0, size)]
    is_call = [False] * (size + 1)
    op_of = [0] * (size + 1)
    match = [0] * (size + 1)
    return_node: dict[int, int] = {}
    for node, (_time, kind, i) in enumerate(events, start=1):
        is_call[node] = kind == 0
        op_of[node] = i
        if kind == 1:
            return_node[i] = node
    for node in range(1, size + 1):
        if is_call[node]:
            match[node] = return_node[op_of[node]]

    def lift(node: int) -> None:
        for n in (node, match[node]):
            nxt[prv[n]] = nxt[n]
            if nxt[n] != -1:
                prv[nxt[n]] = prv[n]

    def unlift(node: int) -> None:
        for n in (match[node], node):
            nxt[prv[n]] = n
            if nxt[n] != -1:
                prv[nxt[n]] = n

    remaining = sum(1 for op in ops if op.type == OK)
    state = initial
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []
    best_depth = -1
    best: tuple[list[int], Any, int] | None = None
    node = nxt[0]
    steps = 0
    while remaining:
        steps += 1
        if deadline is not None and steps % 4096 == 0 and time.monotonic() > deadline:
            return UNKNOWN_VERDICT, f"search gave up after {steps} steps (time limit)"
        # Unlinearized determinate ops have finite return events, ahead of the (infinite) ones
        # of indeterminate ops, so the walk always meets one of those before the end.
        assert node != -1
        if is_call[node]:
            i = op_of[node]
            accepted, new_state = step(state, ops[i])
            if accepted:
                new_linearized = linearized | (1 << i)
                entry = (new_linearized, new_state)
                if entry not in cache:
                    cache.add(entry)
                    stack.append((node, state))
                    state, linearized = new_state, new_linearized
                    if ops[i].type == OK:
                        remaining -= 1
                    lift(node)
                    node = nxt[0]
                    continue
            node = nxt[node]
        else:
            if len(stack) > best_depth:
                best_depth = len(stack)
                best = ([op_of[n] for n, _s in stack], state, op_of[node])
            if not stack:
                return INVALID, _explain(ops, best)
            node, state = stack.pop()
            i = op_of[node]
            linearized &= ~(1 << i)
            if ops[i].type == OK:
                remaining += 1
            unlift(node)
            node = nxt[node]
    return VALID, ""


def _explain(ops: Sequence[Op], best: tuple[list[int], Any, int] | None) -> str:
    if best is None:
        return "    no op can be linearized first"
    order, state, blocked = best
    stuck = ops[blocked]
    done = set(order)
    concurrent = [
        op
        for i, op in enumerate(ops)
        if i not in done
        and i != blocked
        and op.call <= (stuck.ret if stuck.ret is not None else INFINITY)
    ]
    lines = [
        f"    longest linearizable prefix: {len(order)} ops; the register then holds {state!r}",
        "    ...",
        *(f"    {ops[i].describe()}" for i in order[-6:]),
        f"    cannot linearize before it returns: {stuck.describe()}",
    ]
    if concurrent:
        lines.append("    pending / concurrent ops that might have come first:")
        lines.extend(f"      {op.describe()}" for op in concurrent[:8])
    return "\n".join(lines)


def check(
    ops: Iterable[Op], time_limit: float | None = None, initial: dict[str, Any] | None = None
) -> CheckResult:
    """Check every key's sub-history; the verdict is invalid if any key is, unknown if a search
    ran out of time (``time_limit`` seconds for the whole history), else valid."""
    started = time.perf_counter()
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    results = [
        check_key(key, key_ops, initial=(initial or {}).get(key), deadline=deadline)
        for key, key_ops in sorted(by_key.items())
    ]
    verdicts = {r.verdict for r in results}
    verdict = VALID
    for worst in (UNKNOWN_VERDICT, INVALID):
        if worst in verdicts:
            verdict = worst
    return CheckResult(verdict, results, time.perf_counter() - started)


# --------------------------------------------------------------------------- final state


def lost_writes(ops: Iterable[Op], final: dict[str, dict[int, str | None]]) -> list[str]:
    """ "No acknowledged write lost": ``final`` maps key -> node -> the value every node holds
    after healing and catching up. Every node must hold the same value; that value must have
    been written (by an op that was not over before some acknowledged write began), so every
    acknowledged write is either the final value or overwritten by a later (or concurrent) one.
    Keys of ``final`` that no op touched must be absent."""
    problems: list[str] = []
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    for key, per_node in sorted(final.items()):
        values = set(per_node.values())
        if len(values) != 1:
            problems.append(f"{key}: nodes disagree after healing: {per_node}")
            continue
        value = values.pop()
        key_ops = by_key.get(key, [])
        acknowledged = [op for op in key_ops if op.acknowledged_write]
        if value is None:
            candidates = [op for op in key_ops if op.f == "delete" and op.type in (OK, INFO)]
            if not acknowledged:
                continue
        else:
            candidates = [
                op
                for op in key_ops
                if op.f in ("put", "cas")
                and op.value == value
                and (op.acknowledged_write or op.type == INFO)
            ]
            if not candidates:
                problems.append(f"{key}: final value {value!r} was never written")
                continue
        for write in acknowledged:
            if write in candidates:
                continue
            if not any(c.ret is None or c.ret >= write.call for c in candidates):
                shown = f"{value!r}" if value is not None else "absent"
                problems.append(
                    f"{key}: acknowledged write lost: {write.describe()}; every node holds "
                    f"{shown}, written only by ops that finished before it began"
                )
    return problems


__all__ = [
    "FAIL",
    "INFO",
    "INVALID",
    "OK",
    "UNKNOWN_VERDICT",
    "VALID",
    "CheckResult",
    "KeyResult",
    "check",
    "check_key",
    "lost_writes",
    "prune",
    "register_step",
]
