"""``TickClock``: wall-clock wake-ups turned into protocol ticks, with stalls left out.

The replicas count time in ticks (election and heartbeat timers, retries); the runtime's clock
task turns real time into ticks. It wakes every ``interval`` seconds, but the event loop can be
late to wake it:

* by a few intervals under load. That time passed for the protocol too: every due tick counts.
* by much more when the whole process stood still: SIGSTOP, a VM paused or migrated, swapping,
  a blocking call on the loop. Counting such a stall in full makes a follower that heard its
  leader until the stall time out the moment it resumes, before it reads the heartbeats waiting
  in its sockets: it starts an election and deposes a healthy leader (and every other group's,
  with one stall). So a stall counts as ``stall_ticks`` (a heartbeat interval) and the clock starts
  over from the wake-up, like a Go ticker that drops the ticks its reader missed. Nothing about
  safety depends on time; a leader that really failed during the stall is noticed a little later.

Plain arithmetic on the timestamps it is given (no clock of its own), so tests drive it directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TickClock:
    interval: float
    """Seconds per tick."""
    stall_after: float
    """A wake-up later than this (seconds) is a stall, not load."""
    stall_ticks: int
    """Ticks a stall counts as."""
    next_tick: float
    """When the next tick is due (the caller's monotonic clock)."""

    @classmethod
    def starting(
        cls, now: float, *, interval: float, stall_after: float, stall_ticks: int
    ) -> TickClock:
        if interval <= 0 or stall_after < interval or stall_ticks < 1:
            raise ValueError("need interval > 0, stall_after >= interval, stall_ticks >= 1")
        return cls(interval, stall_after, stall_ticks, now + interval)

    def delay(self, now: float) -> float:
        """Seconds to sleep until the next tick is due."""
        return max(0.0, self.next_tick - now)

    def advance(self, now: float) -> tuple[int, float]:
        """The ticks to count at ``now``, and the length of the stall left out (0.0: none)."""
        late = now - self.next_tick
        if late < 0:
            return 0, 0.0
        if late > self.stall_after:
            self.next_tick = now + self.interval
            return self.stall_ticks, late
        due = int(late // self.interval) + 1
        self.next_tick += due * self.interval
        return due, 0.0
