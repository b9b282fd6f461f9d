"""CPU time of the benchmarked processes, from Linux's ``/proc``: what an operation costs.

On a shared machine the ops/s of one run move by ±30% with the neighbours' load; the CPU the nodes
spend per operation moves much less (it counts work done, not time waited), so it shows a change
of cost that throughput hides in the noise. ``paxosbench`` reports it for the nodes it started
(and for etcd with ``--etcd-pids``) as ``cpu_ms_per_op``: all the processes' user and system time
during the measured seconds, divided by the operations measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User plus system CPU seconds used so far by these processes (all their threads), or
    None where ``/proc`` cannot tell (not Linux, or a process is gone)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            # after "pid (name)": state is field 3, utime 14 and stime 15 (proc(5))
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None
    return ticks / CLOCK_TICKS


def cpu_meter(pids: Sequence[int]) -> Callable[[], float | None] | None:
    """``cpu_seconds`` of ``pids`` as a no-argument reading, or None without pids."""
    if not pids:
        return None
    frozen = tuple(pids)
    return lambda: cpu_seconds(frozen)
