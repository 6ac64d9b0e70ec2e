"""Shared fixtures: the domain wired to fakes."""

from __future__ import annotations

import pytest

from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def runner() -> FakeBackendRunner:
    return FakeBackendRunner()


@pytest.fixture
def store() -> FakeSessionStore:
    return FakeSessionStore()


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=0.2))


@pytest.fixture
def services(config, runner, store):
    return bootstrap(config, runner=runner, store=store, clock=FakeClock(), ids=FakeIds())
