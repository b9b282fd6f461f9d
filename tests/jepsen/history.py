"""A history of operations as the clients saw them.

Every operation is recorded twice: when a client *invokes* it (``History.invoke``) and when the
client learns how it ended (``History.complete``). It ends in one of three ways, as in Jepsen:

``ok``    it happened, with the recorded output;
``fail``  it certainly did not happen (the request never reached a node, or was rejected as
          invalid before it could be proposed);
``info``  indeterminate: a timeout, a lost connection, a 503 after the command may already be in
          a leader's queue. It may or may not have happened, and if it did it may take effect at
          any time after its invocation - even after the test ended.

Times are ``time.monotonic_ns()`` of the test process, so they order the events of every client
thread on one clock. Keys are ``"<group>/<key>"`` strings: a key of group 1 and the same key of
group 2 are independent registers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

OK, FAIL, INFO = "ok", "fail", "info"
WRITES = frozenset({"put", "delete", "cas"})


class Unknown:
    """An output nobody observed (the value a failed cas reported, when the API did not say)."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "?"


UNKNOWN = Unknown()


@dataclass
class Op:
    """One client operation on one register.

    ``output`` by ``f``: ``get`` -> the value read (None: absent); ``put`` -> None;
    ``delete`` -> None; ``cas`` -> ``(succeeded, current value or UNKNOWN)``.
    """

    index: int
    process: str
    f: str
    key: str
    value: str | None = None
    expected: str | None = None
    call: int = 0
    ret: int | None = None
    type: str | None = None
    output: Any = None
    node: int | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def determinate(self) -> bool:
        return self.type == OK

    @property
    def acknowledged_write(self) -> bool:
        """A write the client was told happened (a cas only when it succeeded)."""
        if self.type != OK or self.f not in WRITES:
            return False
        return self.f != "cas" or bool(self.output[0])

    def describe(self) -> str:
        if self.f == "get":
            what = "get"
        elif self.f == "put":
            what = f"put {self.value!r}"
        elif self.f == "delete":
            what = "delete"
        else:
            what = f"cas {self.expected!r}->{self.value!r}"
        if self.type == OK:
            if self.f == "get":
                what += f" = {self.output!r}"
            elif self.f == "cas":
                succeeded, current = self.output
                what += " ok" if succeeded else f" failed (was {current!r})"
        status = self.type or "pending"
        if self.type == INFO:
            status += f" ({self.error})" if self.error else ""
        start = self.call / 1e9
        end = "inf" if self.ret is None else f"{self.ret / 1e9:.3f}"
        node = f" node {self.node}" if self.node is not None else ""
        return f"#{self.index} {self.process}{node} {self.key} {what} [{status}] {start:.3f}..{end}"


@dataclass
class Fault:
    name: str
    detail: str
    start: int
    end: int | None = None


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counter: itertools.count = field(default_factory=itertools.count, repr=False)

    def invoke(
        self,
        process: str,
        f: str,
        key: str,
        value: str | None = None,
        expected: str | None = None,
        node: int | None = None,
    ) -> Op:
        op = Op(
            index=next(self._counter),
            process=process,
            f=f,
            key=key,
            value=value,
            expected=expected,
            node=node,
            call=time.monotonic_ns(),
        )
        with self._lock:
            self.ops.append(op)
        return op

    def complete(self, op: Op, type_: str, output: Any = None, error: str | None = None) -> Op:
        if op.type is not None:
            raise ValueError(f"op {op.index} completed twice")
        # An indeterminate op has no return time: it may take effect at any time later.
        op.ret = None if type_ == INFO else time.monotonic_ns()
        op.type, op.output, op.error = type_, output, error
        return op

    def fault(self, name: str, detail: str = "") -> Fault:
        fault = Fault(name, detail, time.monotonic_ns())
        with self._lock:
            self.faults.append(fault)
        return fault

    @staticmethod
    def healed(fault: Fault) -> None:
        fault.end = time.monotonic_ns()

    def snapshot(self) -> list[Op]:
        """Every op; ops still running (a client thread that never returned) count as info."""
        with self._lock:
            ops = list(self.ops)
        return [
            op if op.type is not None else replace(op, type=INFO, ret=None, error="never completed")
            for op in ops
        ]

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(op.type or "pending" for op in self.ops)
