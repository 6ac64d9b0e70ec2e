"""Shared fixtures: the domain wired to fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore
from tests.support.postgres import PostgresServer


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the run (tests make a database each with new_database())."""
    with PostgresServer() as server:
        yield server
