"""When the warm pool grows, shrinks and hands out a process; which hot sessions to end.

Pure decisions over numbers and timestamps (no processes, no clock of their own), so they
can be tested over any arrival pattern. `pool.py` and `hot.py` act on them.

The warm pool of one invocation keeps `floor` processes ready and follows demand up to
`ceiling`: a request that finds nothing ready raises the target by one; every `shrink_secs`
without such a miss lowers it by one again, never below the floor. New processes are
started one at a time, at most one per `pace_secs` (about a CLI's start-up time), because
a CLI starting takes most of a core: starting several at once would slow the runs that
are live on a 2-core machine more than the spares would ever save. For the same reason the
pool grows beyond its floor only while the machine has `min_idle_cores` idle: with the CPUs
busy (its own runs or anything else), a spare's start-up costs the live runs as much as a
cold start would, only earlier, so growing then cannot help and can hurt. The floor itself
is always kept: a spare that has seconds to start before the next request still saves it
the whole start-up, even on a busy machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec


class PoolLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The configured bounds of one pooled invocation."""

    floor: int
    ceiling: int
    #: Seconds without a miss before the target gives back one process above the floor.
    shrink_secs: float = 60.0
    #: Least seconds between two starts (a CLI's start-up takes most of a core).
    pace_secs: float = 0.5
    #: A process that waited longer than this is ended rather than handed out.
    idle_secs: float = 300.0
    #: Idle CPU (in cores) the machine must have for a process to be started.
    min_idle_cores: float = 1.0


class PoolPolicy:
    """The target size of one pooled invocation, moved by misses and idle time."""

    def __init__(self, limits: PoolLimits) -> None:
        self.limits = limits
        self.target = min(limits.floor, limits.ceiling)
        self._last_miss = -math.inf
        self._last_change = -math.inf
        self._last_start = -math.inf

    def on_request(self, now: float, *, ready: int) -> None:
        """A request looked for a process; with none ready the pool was too small."""
        self._decay(now)
        if ready == 0:
            self._last_miss = now
            if self.target < self.limits.ceiling:
                self.target += 1
                self._last_change = now

    def _decay(self, now: float) -> None:
        quiet_since = max(self._last_miss, self._last_change)
        while self.target > self.limits.floor and now - quiet_since >= self.limits.shrink_secs:
            self.target -= 1
            quiet_since += self.limits.shrink_secs
            self._last_change = quiet_since

    def starts(
        self, now: float, *, ready: int, capacity: int | None, idle_cores: float | None = None
    ) -> int:
        """How many processes to start now (0 or 1): below target, paced, within `capacity`
        (the runs admission would still allow; None = unlimited), and beyond the floor only
        while the machine has `min_idle_cores` idle (`idle_cores`; None = not known)."""
        self._decay(now)
        if ready >= self.target or now - self._last_start < self.limits.pace_secs:
            return 0
        if capacity is not None and ready >= capacity:
            return 0
        busy = idle_cores is not None and idle_cores < self.limits.min_idle_cores
        if busy and ready >= self.limits.floor:
            return 0
        self._last_start = now
        return 1

    def next_shrink(self) -> float:
        """When the target next gives back a process on its own (inf at the floor)."""
        if self.target <= self.limits.floor:
            return math.inf
        return max(self._last_miss, self._last_change) + self.limits.shrink_secs

    def next_start(self) -> float:
        """The earliest time pacing allows the next start."""
        return self._last_start + self.limits.pace_secs

    def surplus(self, now: float, *, ready: int) -> int:
        """How many ready processes to end because the target shrank."""
        self._decay(now)
        return max(0, ready - self.target)

    def usable(self, now: float, *, born: float, alive: bool) -> bool:
        """Whether a waiting process may serve a request: alive and not waited too long.

        A process answers at the earliest when its own start-up is over; a cold start
        needs all of it, so any live process started before now answers no later than a
        cold one would (started at `now`).
        """
        return alive and born <= now and now - born <= self.limits.idle_secs


def hot_next_due(last_used: Mapping[str, float], *, idle_secs: float) -> float:
    """When the next hot session runs out of idle time (inf with none waiting)."""
    return min(last_used.values(), default=math.inf) + idle_secs


def hot_evictions(
    last_used: Mapping[str, float], now: float, *, max_hot: int, idle_secs: float
) -> list[str]:
    """Which hot sessions to end: those idle too long, then the least recently used ones
    until at most `max_hot` remain."""
    idle = [k for k, t in last_used.items() if now - t > idle_secs]
    rest = sorted((t, k) for k, t in last_used.items() if now - t <= idle_secs)
    over = max(0, len(rest) - max(0, max_hot))
    return idle + [k for _, k in rest[:over]]
