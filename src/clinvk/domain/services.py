"""The bundle of services a front end uses (built by `bootstrap`)."""

from __future__ import annotations

from dataclasses import dataclass

from clinvk.domain.config import Config
from clinvk.domain.models import BackendInfo
from clinvk.domain.prompt import PromptService
from clinvk.domain.sessions import SessionService
from clinvk.ports import BackendRunner, SessionStore


@dataclass(frozen=True)
class Services:
    """Everything a front end (HTTP, CLI, a Python program) needs."""

    config: Config
    runner: BackendRunner
    store: SessionStore
    prompt: PromptService
    sessions: SessionService

    def backends(self) -> list[BackendInfo]:
        """Every backend with its availability."""
        return [self.runner.info(name) for name in self.runner.names()]
