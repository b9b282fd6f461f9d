"""CPU time of the benchmarked processes, from Linux's ``/proc``: what an operation costs.

Throughput and latency mix the work a request costs with the time it waits (for the disk, a
peer, a core). The CPU the nodes spend per operation counts only the work: when one client's
latency is bound by three processes sharing two cores, it is the number to bring down, and it
compares the cost of two systems directly. ``paxosbench`` reports it for the nodes it started
(and for etcd with ``--etcd-pids``) as ``cpu_ms_per_op``: all the processes' user and system time
during the measured seconds, divided by the operations measured. It drifts with the machine's
load as the other numbers do, so compare it within one run.
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
