"""The bundle of services a front end uses (built by `bootstrap`)."""

from __future__ import annotations

from dataclasses import dataclass

from clinvk.domain.chain import ChainService
from clinvk.domain.compare import CompareService
from clinvk.domain.config import Config
from clinvk.domain.models import BackendInfo
from clinvk.domain.parallel import ParallelService
from clinvk.domain.prompt import PromptService
from clinvk.domain.sessions import SessionService
from clinvk.domain.tool_runs import ToolRunService
from clinvk.ports import BackendRunner, SessionStore


@dataclass(frozen=True)
class Services:
    """Everything a front end (HTTP, CLI, a Python program) needs."""

    config: Config
    runner: BackendRunner
    store: SessionStore
    prompt: PromptService
    sessions: SessionService
    parallel: ParallelService
    chain: ChainService
    compare: CompareService
    #: Runs with client tools (parked at their tool calls); None when not wired.
    tool_runs: ToolRunService | None = None

    def backends(self) -> list[BackendInfo]:
        """Every backend with its availability."""
        return [self.runner.info(name) for name in self.runner.names()]
