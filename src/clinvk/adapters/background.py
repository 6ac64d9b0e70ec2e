"""Work that outlives the request that started it (parked tool runs), on the server's
event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from clinvk.adapters.logging import get_logger

_log = get_logger(__name__)


class LoopBackground:
    """Starts each job as its own task on the running loop and keeps it referenced until
    it ends; `cancel_all` ends what still runs (shutdown)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` in the background."""
        task = asyncio.get_running_loop().create_task(self._guarded(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a background job has nobody else to tell
            _log.exception("background job failed")

    def running(self) -> int:
        """Jobs still running."""
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every job and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
