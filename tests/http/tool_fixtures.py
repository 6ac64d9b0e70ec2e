"""Fixtures the client-tools HTTP tests share: a fake bridge, a runner whose CLI calls
`get_weather` once, and an app over both (heartbeats every 5 s)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import (
    FakeClock,
    FakeIds,
    FakeSessionStore,
    FakeToolBridge,
    FakeToolCallingRunner,
)


@pytest.fixture
def bridge() -> FakeToolBridge:
    return FakeToolBridge()


@pytest.fixture
def runner(bridge) -> FakeToolCallingRunner:
    return FakeToolCallingRunner(bridge, [[("get_weather", {"city": "Paris"})]])


@pytest.fixture
def client(tmp_path, runner, bridge):
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=5))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge)
    with TestClient(create_app(services)) as c:
        yield c
