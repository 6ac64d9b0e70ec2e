"""Admission control: bounded concurrent CLI runs, a FIFO queue of bounded length and wait.

CLIs are heavy (hundreds of MB and most of a core each), so the number running at once is
capped globally and per backend. Runs beyond the cap wait in arrival order; when the queue
is full or the wait runs out the run is refused with `Overloaded` (HTTP 429 + Retry-After:
the client should retry later, the server itself is healthy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from clinvk.domain.config import Config
from clinvk.domain.errors import Overloaded
from clinvk.domain.models import RunResult, RunSpec
from clinvk.domain.runner_decorator import RunnerDecorator
from clinvk.ports import BackendRunner, EventSink


class AdmissionStats:
    """Live numbers for metrics and health."""

    def __init__(self) -> None:
        self.running = 0
        self.queued = 0
        self.rejected = 0
        self.admitted = 0
        self.total_wait_secs = 0.0


class Admission:
    """Slots for CLI runs: one global semaphore plus one per limited backend (both FIFO)."""

    def __init__(self, config: Config) -> None:
        server = config.server
        limit = server.max_concurrent_runs
        self._global = anyio.Semaphore(limit) if limit > 0 else None
        self._per_backend = {
            name: anyio.Semaphore(section.max_concurrent)
            for name, section in config.backends.items()
            if section.max_concurrent > 0
        }
        self._max_queue = server.queue_max_length
        self._max_wait = server.queue_max_wait_secs
        self.stats = AdmissionStats()

    def _retry_after(self) -> float:
        return max(1.0, min(30.0, self._max_wait / 4 if self._max_wait else 1.0))

    @asynccontextmanager
    async def slot(self, backend: str) -> AsyncIterator[None]:
        """Hold a slot for one run of `backend`; raise Overloaded when none comes in time."""
        semaphores = [s for s in (self._per_backend.get(backend), self._global) if s is not None]
        free = all(s.value > 0 for s in semaphores)
        if not free and self.stats.queued >= self._max_queue:
            self.stats.rejected += 1
            raise Overloaded(
                f"too many CLI runs: {self.stats.queued} waiting already; retry later",
                retry_after=self._retry_after(),
            )
        acquired: list[anyio.Semaphore] = []
        self.stats.queued += 1
        started = anyio.current_time()
        try:
            with anyio.move_on_after(self._max_wait if self._max_wait > 0 else None):
                for semaphore in semaphores:
                    await semaphore.acquire()
                    acquired.append(semaphore)
        finally:
            self.stats.queued -= 1
            self.stats.total_wait_secs += anyio.current_time() - started
        if len(acquired) < len(semaphores):
            for semaphore in acquired:
                semaphore.release()
            self.stats.rejected += 1
            raise Overloaded(
                f"no free CLI slot within {self._max_wait:g} s; retry later",
                retry_after=self._retry_after(),
            )
        self.stats.admitted += 1
        self.stats.running += 1
        try:
            yield
        finally:
            self.stats.running -= 1
            for semaphore in reversed(acquired):
                semaphore.release()


class AdmittingBackendRunner(RunnerDecorator):
    """A BackendRunner that waits for an admission slot before each run."""

    def __init__(self, inner: BackendRunner, admission: Admission) -> None:
        super().__init__(inner)
        self.admission = admission

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        async with self.admission.slot(spec.backend):
            return await self.inner.run(spec, on_event)

