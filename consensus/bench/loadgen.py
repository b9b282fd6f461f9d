"""The closed-loop load generator and its statistics."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from .targets import Target


@dataclass(frozen=True)
class Workload:
    clients: int
    duration: float
    warmup: float = 1.0
    value_size: int = 100
    read_fraction: float = 0.0
    keys: int = 1000


@dataclass
class RunResult:
    target: str
    workload: Workload
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    writes: int = 0
    """Acknowledged writes, the warm-up's included: what the target's state holds from the run."""
    cpu_seconds: float | None = None
    """CPU the target's processes used during the measured seconds (None: not measured)."""

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self) -> dict[str, object]:
        return {
            "target": self.target,
            "clients": self.workload.clients,
            "read_fraction": self.workload.read_fraction,
            "value_size": self.workload.value_size,
            "ops": self.ops,
            "ops_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(0.50) * 1000, 3),
            "p90_ms": round(self.percentile(0.90) * 1000, 3),
            "p99_ms": round(self.percentile(0.99) * 1000, 3),
            "max_ms": round(max(self.latencies, default=float("nan")) * 1000, 3),
            "errors": self.errors,
            "cpu_ms_per_op": (
                round(self.cpu_seconds * 1000 / self.ops, 3)
                if self.cpu_seconds is not None and self.ops
                else None
            ),
        }


async def run(
    target: Target,
    workload: Workload,
    seed: int = 0,
    cpu: Callable[[], float | None] | None = None,
) -> RunResult:
    """Drive ``target`` with ``workload.clients`` closed-loop clients; measure after warm-up.

    ``cpu`` reads the CPU seconds the target's processes have used (``consensus.bench.cpu``); it
    is read when the measured seconds start and when they end."""
    result = RunResult(target.name, workload)
    value = "x" * workload.value_size
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + workload.warmup
    end = measure_from + workload.duration
    cpu_readings: list[float | None] = []
    if cpu is not None:
        loop.call_at(measure_from, lambda: cpu_readings.append(cpu()))
        loop.call_at(end, lambda: cpu_readings.append(cpu()))

    async def client(number: int) -> None:
        rng = random.Random(seed * 100_003 + number)
        while (now := loop.time()) < end:
            key = f"k{rng.randrange(workload.keys)}"
            began = time.perf_counter()
            try:
                if rng.random() < workload.read_fraction:
                    await target.get(session, key)
                else:
                    await target.put(session, key, value)
                    result.writes += 1
            except Exception:  # noqa: BLE001 - any failure counts as an error and the client goes on
                if now >= measure_from:
                    result.errors += 1
                await asyncio.sleep(0.05)
                continue
            if now >= measure_from and loop.time() <= end:
                result.latencies.append(time.perf_counter() - began)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(n) for n in range(workload.clients)))
    close = getattr(target, "close", None)
    if close is not None:
        await close()
    result.elapsed = workload.duration
    if len(cpu_readings) == 2 and None not in cpu_readings:
        first, last = cpu_readings
        result.cpu_seconds = last - first  # type: ignore[operator]
    return result
