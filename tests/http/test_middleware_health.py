"""/health through the whole middleware stack: honest status, no key, never limited."""

from __future__ import annotations

import functools

import msgspec
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.middleware.rate_limit import TokenBuckets
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


class BrokenStore(FakeSessionStore):
    """A session store whose disk has gone away."""

    async def count(self) -> int:
        raise PermissionError(13, "Permission denied", "/var/lib/clinvk/sessions")


def test_unavailable_session_store_is_503_unhealthy(config):
    """A store that cannot be read makes /health 503 `unhealthy`, without the OS detail."""
    services = bootstrap(config, runner=FakeBackendRunner(), store=BrokenStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        r = client.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unhealthy"
    assert body["session_store"] == {"available": False, "session_count": 0}
    assert "/var/lib" not in r.text


def test_health_states_ok_and_degraded(config):
    """All backends found: `ok`; one missing: `degraded` (still 200, the server works)."""
    runner = FakeBackendRunner()
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    with TestClient(create_app(services)) as client:
        assert client.get("/health").json()["status"] == "ok"
        runner.unavailable.add("codex")
        r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert {b["name"]: b["available"] for b in r.json()["backends"]}["codex"] is False


def test_health_needs_no_key_but_is_rate_limited(config, monkeypatch):
    """Probes need no key even with auth on, and are rate limited like every endpoint."""
    # A clock that stands still: no token comes back during the test, however slow it runs.
    monkeypatch.setattr("clinvk.adapters.http.middleware.TokenBuckets",
                        functools.partial(TokenBuckets, clock=lambda: 1000.0))
    server = msgspec.structs.replace(config.server, rate_limit_enabled=True,
                                     rate_limit_rps=0.1, rate_limit_burst=2)
    services = bootstrap(msgspec.structs.replace(config, server=server),
                         runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services, api_keys=["k"])) as client:
        codes = [client.get("/health").status_code for _ in range(3)]
    assert codes == [200, 200, 429]