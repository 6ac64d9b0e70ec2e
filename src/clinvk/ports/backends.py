"""Port: running a prompt on a backend CLI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from clinvk.domain.events import StreamEvent
from clinvk.domain.models import BackendInfo, RunResult, RunSpec

#: Receives each unified event as soon as the CLI produced it.
EventSink = Callable[[StreamEvent], Awaitable[None]]


class BackendRunner(Protocol):
    """Runs one prompt on one backend and reports unified events while it runs."""

    def names(self) -> list[str]:
        """All backend names this runner knows, in display order."""
        ...

    def info(self, backend: str) -> BackendInfo:
        """Whether `backend` can run here and its configured default model."""
        ...

    def command(self, spec: RunSpec) -> tuple[str, ...]:
        """The argv that `run(spec)` would execute (for dry runs)."""
        ...

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        """Run to completion; raise BackendUnavailable, BackendFailed or BackendTimeout."""
        ...
