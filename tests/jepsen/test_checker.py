"""The linearizability checker on known-good and known-bad histories, and against brute force."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from .checker import INVALID, VALID, check, check_key, lost_writes, prune, register_step
from .history import FAIL, INFO, OK, UNKNOWN, History, Op

K = "1/x"


class Builder:
    """Ops with explicit times (seconds; ``None`` return = indeterminate)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(
        self,
        f: str,
        call: float,
        ret: float | None,
        *,
        value: str | None = None,
        expected: str | None = None,
        output: object = None,
        type_: str | None = None,
        key: str = K,
        process: str = "p",
    ) -> Op:
        op = Op(
            index=len(self.ops),
            process=process,
            f=f,
            key=key,
            value=value,
            expected=expected,
            call=int(call * 1e9),
            ret=None if ret is None else int(ret * 1e9),
            type=type_ or (INFO if ret is None else OK),
            output=output,
        )
        self.ops.append(op)
        return op

    def put(self, value: str, call: float, ret: float | None, **kw: object) -> Op:
        return self.add("put", call, ret, value=value, **kw)

    def get(self, output: str | None, call: float, ret: float | None, **kw: object) -> Op:
        return self.add("get", call, ret, output=output, **kw)

    def delete(self, call: float, ret: float | None, **kw: object) -> Op:
        return self.add("delete", call, ret, **kw)

    def cas(
        self,
        expected: str | None,
        value: str,
        call: float,
        ret: float | None,
        succeeded: bool | None = None,
        current: object = UNKNOWN,
        **kw: object,
    ) -> Op:
        output = None if succeeded is None else (succeeded, current)
        return self.add("cas", call, ret, value=value, expected=expected, output=output, **kw)

    def verdict(self) -> str:
        return check(self.ops).verdict


# ----------------------------------------------------------------------------- known good


def test_empty_and_sequential_histories_are_linearizable() -> None:
    assert Builder().verdict() == VALID
    h = Builder()
    h.get(None, 0, 1)
    h.put("a", 2, 3)
    h.get("a", 4, 5)
    h.put("b", 6, 7)
    h.get("b", 8, 9)
    h.delete(10, 11)
    h.get(None, 12, 13)
    assert h.verdict() == VALID


@pytest.mark.parametrize("seen", [None, "a"])
def test_a_read_concurrent_with_a_write_may_see_either_value(seen) -> None:
    h = Builder()
    h.put("a", 0, 10)
    h.get(seen, 1, 2)
    assert h.verdict() == VALID


def test_concurrent_writes_may_take_effect_in_either_order_but_reads_agree() -> None:
    h = Builder()
    h.put("a", 0, 5)
    h.put("b", 1, 6)
    h.get("a", 7, 8)
    h.get("a", 9, 10)
    assert h.verdict() == VALID
    h.get("b", 11, 12)  # flips back to b with no write in between
    assert h.verdict() == INVALID


def test_independent_keys_are_checked_separately() -> None:
    h = Builder()
    h.put("a", 0, 1, key="1/x")
    h.put("a", 0, 1, key="2/x")
    h.get("a", 2, 3, key="1/x")
    h.get("a", 2, 3, key="2/x")
    h.get(None, 2, 3, key="1/y")
    result = check(h.ops)
    assert result.verdict == VALID
    assert [k.key for k in result.keys] == ["1/x", "1/y", "2/x"]


# ----------------------------------------------------------------------------- known bad


def test_stale_read_is_caught() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("b", 2, 3)
    h.get("a", 4, 5)
    result = check(h.ops)
    assert result.verdict == INVALID
    explanation = result.failures[0].explanation
    assert "get = 'a'" in explanation and "'b'" in explanation


def test_lost_write_is_caught() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.get(None, 2, 3)
    assert h.verdict() == INVALID


def test_read_of_a_value_never_written_is_caught() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.get("zzz", 0.5, 3)
    assert h.verdict() == INVALID


def test_read_of_a_failed_write_is_caught() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("b", 2, 3, type_=FAIL)
    h.get("b", 4, 5)
    assert h.verdict() == INVALID


def test_reads_must_respect_real_time_order_between_readers() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("b", 2, 20)  # slow write
    h.get("b", 3, 4, process="r1")  # already visible ...
    h.get("a", 5, 6, process="r2")  # ... so this later read is stale
    assert h.verdict() == INVALID


def test_deleted_value_cannot_come_back() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.delete(2, 3)
    h.get("a", 4, 5)
    assert h.verdict() == INVALID


# ----------------------------------------------------------------------------- indeterminate ops


def test_indeterminate_write_may_take_effect_much_later() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("b", 2, None)  # timed out
    h.get("a", 10, 11)  # not yet applied ...
    h.get("b", 12, 13)  # ... and now it is
    assert h.verdict() == VALID
    h.get("a", 14, 15)  # but it cannot be undone
    assert h.verdict() == INVALID


def test_indeterminate_write_may_never_happen() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("b", 2, None)
    h.get("a", 3, 4)
    h.get("a", 50, 51)
    assert h.verdict() == VALID


def test_indeterminate_write_cannot_take_effect_before_it_was_invoked() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.get("b", 2, 3)
    h.put("b", 4, None)
    assert h.verdict() == INVALID


def test_indeterminate_reads_are_ignored() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.get(None, 2, None)
    assert h.verdict() == VALID


# ----------------------------------------------------------------------------- cas


def test_cas_semantics() -> None:
    h = Builder()
    h.cas(None, "a", 0, 1, succeeded=True, current="a")  # expected null matches absent
    h.cas("zz", "b", 2, 3, succeeded=False, current="a")
    h.cas("a", "b", 4, 5, succeeded=True, current="b")
    h.get("b", 6, 7)
    assert h.verdict() == VALID


def test_cas_that_succeeds_on_the_wrong_value_is_caught() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.cas("zz", "b", 2, 3, succeeded=True)
    assert h.verdict() == INVALID


def test_cas_that_fails_on_the_right_value_is_caught() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.cas("a", "b", 2, 3, succeeded=False, current="a")
    assert h.verdict() == INVALID


def test_failed_cas_must_report_the_current_value() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.cas("zz", "b", 2, 3, succeeded=False, current="c")
    assert h.verdict() == INVALID


def test_two_concurrent_cas_from_the_same_value_cannot_both_succeed() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.cas("a", "b", 2, 5, succeeded=True)
    h.cas("a", "c", 3, 6, succeeded=True)
    assert h.verdict() == INVALID


def test_indeterminate_cas_applies_only_if_it_matched() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.cas("zz", "b", 2, None)  # could never have matched
    h.get("b", 3, 4)
    assert h.verdict() == INVALID
    h2 = Builder()
    h2.put("a", 0, 1)
    h2.cas("a", "b", 2, None)
    h2.get("b", 3, 4)
    assert h2.verdict() == VALID


# ----------------------------------------------------------------------------- pruning


def test_pruning_drops_only_unobservable_indeterminate_writes() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("seen", 2, None)
    h.put("unseen", 2, None)
    h.put("failed", 2, 3, type_=FAIL)
    h.get(None, 2, None)
    h.get("seen", 5, 6)
    kept, pruned = prune(h.ops)
    assert pruned == 3
    assert {op.value for op in kept if op.f == "put"} == {"a", "seen"}


# ----------------------------------------------------------------------------- brute force


def brute_force(ops: list[Op]) -> bool:
    """Any subset of the indeterminate ops, in any order respecting real time, that the model
    accepts. Only for tiny histories."""
    ops = [o for o in ops if o.type == OK or (o.type == INFO and o.f != "get")]
    sure = [o for o in ops if o.type == OK]
    maybe = [o for o in ops if o.type == INFO]
    for r in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, r):
            candidates = sure + list(chosen)
            for order in itertools.permutations(candidates):
                if not all(
                    not (b.ret is not None and b.ret < a.call)
                    for i, a in enumerate(order)
                    for b in order[i + 1 :]
                ):
                    continue
                state = None
                for op in order:
                    accepted, state = register_step(state, op)
                    if not accepted:
                        break
                else:
                    return True
    return False


def random_history(
    rng: random.Random,
    size: int,
    values: int,
    clients: int,
    corrupt: bool = True,
    indeterminate: float = 0.15,
) -> list[Op]:
    """A history of a real register (so mostly linearizable), then maybe a corrupted output."""
    ops: list[Op] = []
    free_at = [0.0] * clients
    for index in range(size):
        client = rng.randrange(clients)
        call = free_at[client] + rng.random()
        ret = call + rng.random() * 3
        free_at[client] = ret
        f = rng.choice(["get", "get", "put", "delete", "cas"])
        value = f"v{rng.randrange(values)}" if f in ("put", "cas") else None
        expected = None
        if f == "cas" and rng.random() < 0.8:
            expected = f"v{rng.randrange(values)}"
        op = Op(index, f"c{client}", f, K, value, expected, int(call * 1e9), int(ret * 1e9))
        op.point = rng.uniform(call, ret)  # type: ignore[attr-defined]
        ops.append(op)
    state = None
    for op in sorted(ops, key=lambda o: o.point):  # type: ignore[attr-defined]
        op.type = OK
        if op.f == "get":
            op.output = state
        elif op.f == "cas":
            hit = state == op.expected
            op.output = (hit, op.value if hit else state)
            state = op.value if hit else state
        elif op.f == "put":
            state = op.value
        else:
            state = None
    for op in ops:
        roll = rng.random()
        if roll < indeterminate:
            op.type, op.ret, op.output = INFO, None, None
        elif not corrupt:
            continue
        elif roll < indeterminate + 0.1 and op.f == "get":
            op.output = rng.choice([None, f"v{rng.randrange(values)}"])
        elif roll < indeterminate + 0.15 and op.f == "cas":
            op.output = (not op.output[0], op.output[1])
    return ops


def test_agrees_with_brute_force_on_small_random_histories() -> None:
    rng = random.Random(6)
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        ops = random_history(rng, size=rng.randint(1, 6), values=3, clients=3)
        expected = brute_force(ops)
        verdicts[expected] += 1
        got = check_key(K, ops).verdict
        assert got == (VALID if expected else INVALID), [op.describe() for op in ops]
    assert verdicts[True] > 50 and verdicts[False] > 50, verdicts


def test_big_concurrent_history_is_checked_quickly() -> None:
    rng = random.Random(7)
    ops = random_history(rng, size=2000, values=10**6, clients=10, corrupt=False)
    started = time.perf_counter()
    assert check(ops, time_limit=60).verdict == VALID
    assert time.perf_counter() - started < 10


def test_history_recorder_marks_unfinished_ops_indeterminate() -> None:
    history = History()
    done = history.invoke("c1", "put", K, value="a", node=1)
    history.complete(done, OK)
    running = history.invoke("c2", "get", K, node=2)
    ops = history.snapshot()
    assert [op.type for op in ops] == [OK, INFO]
    assert running.type is None  # the live op is untouched
    with pytest.raises(ValueError, match="twice"):
        history.complete(done, OK)


# ----------------------------------------------------------------------------- lost writes


def test_no_acknowledged_write_lost() -> None:
    h = Builder()
    h.put("a", 0, 1)
    h.put("b", 2, 3)
    h.put("c", 2.5, None)
    assert lost_writes(h.ops, {K: {1: "b", 2: "b", 3: "b"}}) == []
    assert lost_writes(h.ops, {K: {1: "c", 2: "c", 3: "c"}}) == []  # the info write won
    [problem] = lost_writes(h.ops, {K: {1: "a", 2: "a", 3: "a"}})
    assert "acknowledged write lost" in problem and "put 'b'" in problem
    [problem] = lost_writes(h.ops, {K: {1: "b", 2: "a", 3: "b"}})
    assert "disagree" in problem
    [problem] = lost_writes(h.ops, {K: {1: "zz", 2: "zz", 3: "zz"}})
    assert "never written" in problem
    problems = lost_writes(h.ops, {K: {1: None, 2: None, 3: None}})
    assert problems and all("lost" in p for p in problems)  # nothing deleted them
    h.delete(4, 5)
    assert lost_writes(h.ops, {K: {1: None, 2: None, 3: None}}) == []
