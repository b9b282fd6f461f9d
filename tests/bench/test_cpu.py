"""CPU per operation in the benchmark: read from /proc, taken over the measured seconds only."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from consensus.bench.cpu import cpu_meter, cpu_seconds
from consensus.bench.loadgen import Workload, run
from consensus.bench.report import median_of_runs, table


def test_cpu_seconds_counts_this_process_work() -> None:
    before = cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = cpu_seconds([os.getpid()])
    assert before is not None and after is not None
    assert 0.2 <= after - before <= 2.0


def test_an_unknown_process_gives_no_reading() -> None:
    assert cpu_seconds([os.getpid(), 2**22 + 12345]) is None
    assert cpu_meter([]) is None


class SleepyTarget:
    name = "sleepy"

    async def put(self, session: Any, key: str, value: str) -> None:
        await asyncio.sleep(0.01)

    async def get(self, session: Any, key: str) -> None:
        await asyncio.sleep(0.01)


def test_cpu_is_read_when_the_measured_seconds_start_and_end() -> None:
    readings = iter([10.0, 12.5])
    calls: list[float] = []

    def meter() -> float:
        calls.append(time.monotonic())
        return next(readings)

    workload = Workload(clients=2, duration=0.3, warmup=0.2)
    started = time.monotonic()
    result = asyncio.run(run(SleepyTarget(), workload, cpu=meter))

    assert len(calls) == 2
    assert calls[0] - started >= 0.15 and calls[1] - calls[0] >= 0.25  # not the warm-up
    assert result.cpu_seconds == 2.5
    summary = result.summary()
    assert summary["cpu_ms_per_op"] == round(2500 / result.ops, 3)


def test_rows_without_a_reading_show_a_dash() -> None:
    workload = Workload(clients=1, duration=0.1, warmup=0.0)
    summary = asyncio.run(run(SleepyTarget(), workload)).summary()
    assert summary["cpu_ms_per_op"] is None
    row = median_of_runs([summary, summary])
    assert row["cpu_ms_per_op"] is None
    assert table([row]).splitlines()[1].rstrip().endswith("-")
    measured = median_of_runs([{**summary, "cpu_ms_per_op": v} for v in (1.0, 3.0, 2.0)])
    assert measured["cpu_ms_per_op"] == 2.0
