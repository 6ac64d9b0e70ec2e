"""The warm pool's and the hot sessions' own timer: one task for the server's lifespan.

Requests look after the pool as they use it (take, the paced starts beside a live run), but
time passes between requests too: a target that grew must still be filled once the burst
that grew it is over, must shrink back when quiet, and processes that waited too long (pool
or hot sessions) must end even if no request comes. The tender does that. It starts spares
only while no run is live, so it never takes CPU from a run's own start-up or answer (beside
a live run, the runner's paced `keep_filled` fills the pool once the run has answered), and
it sleeps until the next thing is due, or until a run ends.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import anyio

from clinvk.adapters.backends.hot import HotSessions
from clinvk.adapters.backends.pool import WarmPool

#: Shortest sleep between two looks (a due time already past must not spin the loop).
MIN_SLEEP = 0.05
#: Longest sleep: a waiting process that died is noticed within this.
MAX_SLEEP = 30.0


class PoolTender:
    """Looks after `pool` and `hot` off the request path while `tend` runs."""

    def __init__(
        self, pool: WarmPool, hot: HotSessions, *,
        capacity: Callable[[str], int | None] = lambda backend: None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        """`capacity(backend)`: how many more runs admission would allow now (None: no
        limit); the pool never keeps more spares than that."""
        self._pool = pool
        self._hot = hot
        self._capacity = capacity
        self._clock = clock
        self._live = 0
        self._opening = 0
        self._changed: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._ended: anyio.Event | None = None
        #: Looks taken (for tests and /health-style introspection).
        self.looks = 0

    @property
    def live(self) -> int:
        """Runs in progress."""
        return self._live

    @property
    def calm(self) -> bool:
        """Whether no live run is still waiting for its first text (its latency-critical
        start, which a spare starting at normal priority would slow)."""
        return self._opening == 0

    @contextlib.contextmanager
    def running(self) -> Iterator[Callable[[], None]]:
        """Mark one run as live for its duration; its end wakes the tender. Yields what the
        run calls once it has answered (its start is over; at the latest, its end)."""
        self._live += 1
        self._opening += 1
        opening = True

        def answered() -> None:
            nonlocal opening
            if opening:
                opening = False
                self._opening -= 1

        try:
            yield answered
        finally:
            answered()
            self._live -= 1
            self.poke()

    def poke(self) -> None:
        """Have the tender look again now."""
        if self._changed is not None:
            self._changed.set()

    async def look(self) -> float:
        """One look: end what is past its time, start one spare if quiet; the time at
        which the next look is due."""
        self.looks += 1
        await self._hot.maintain()
        due = await self._pool.tend(quiet=self._live == 0, capacity=self._capacity)
        return min(due, self._hot.next_due())

    async def tend(self) -> None:
        """Look after the pool and the hot sessions until `stop` (server shutdown)."""
        self._ended = anyio.Event()
        try:
            with anyio.CancelScope() as self._scope:
                while True:
                    self._changed = anyio.Event()  # before the look: a poke during it is kept
                    due = await self.look()
                    now = self._clock()
                    sleep = MAX_SLEEP if math.isinf(due) else min(
                        MAX_SLEEP, max(MIN_SLEEP, due - now)
                    )
                    with anyio.move_on_after(sleep):
                        await self._changed.wait()
        finally:
            self._ended.set()

    async def stop(self) -> None:
        """End `tend` and wait for it. Its process starts and ends are shielded, so it stops
        between them, never leaving a process started but not in the pool (a plain task
        cancel would: asyncio's cancel goes through anyio's shields)."""
        if self._scope is not None:
            self._scope.cancel()
        if self._ended is not None:
            await self._ended.wait()
