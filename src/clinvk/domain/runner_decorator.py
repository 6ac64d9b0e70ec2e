"""Base of BackendRunner decorators (admission, metrics, logging): delegate to the inner
runner; a subclass overrides only `run`."""

from __future__ import annotations

from typing import Any

from clinvk.domain.models import BackendInfo, RunResult, RunSpec
from clinvk.ports import BackendRunner, EventSink


class RunnerDecorator:
    """A BackendRunner that wraps another one."""

    def __init__(self, inner: BackendRunner) -> None:
        self.inner = inner

    def names(self) -> list[str]:
        return self.inner.names()

    def info(self, backend: str) -> BackendInfo:
        return self.inner.info(backend)

    def command(self, spec: RunSpec) -> tuple[str, ...]:
        return self.inner.command(spec)

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        return await self.inner.run(spec, on_event)

    def __getattr__(self, name: str) -> Any:
        # Adapter-specific extras (process groups, the warm pool) stay reachable.
        return getattr(self.inner, name)
