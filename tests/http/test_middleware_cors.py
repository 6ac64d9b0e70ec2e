"""CORS: localhost origins by default, configured origins otherwise, preflight handled."""

from __future__ import annotations

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


def preflight(client: TestClient, origin: str, path: str = "/api/v1/prompt"):
    return client.options(path, headers={
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key, x-stainless-lang",
    })


@pytest.fixture
def make_client(config):
    clients: list[TestClient] = []

    def make(api_keys=(), **server) -> TestClient:
        cfg = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, **server)
        )
        services = bootstrap(cfg, runner=FakeBackendRunner(), store=FakeSessionStore(),
                             clock=FakeClock(), ids=FakeIds())
        client = TestClient(create_app(services, api_keys=api_keys))
        clients.append(client.__enter__())
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.mark.parametrize("origin", [
    "http://localhost:5173", "http://127.0.0.1", "https://localhost", "http://[::1]:8080",
])
def test_default_allows_localhost_origins(client, origin):
    """With no configured origins, pages served from this machine may call the API."""
    r = preflight(client, origin)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
    assert r.headers["access-control-max-age"] == "300"
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize("origin", [
    "https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.nip.io",
    "null",
])
def test_default_refuses_other_origins(client, origin):
    """Any other origin gets no CORS permission, on preflight or on the real request."""
    assert preflight(client, origin).status_code == 400
    r = client.get("/api/v1/backends", headers={"Origin": origin})
    assert "access-control-allow-origin" not in r.headers


def test_configured_origins_credentials_and_max_age(make_client):
    """cors_allowed_origins replaces the localhost default; credentials and max age apply."""
    client = make_client(cors_allowed_origins=["https://app.example.com"],
                         cors_allow_credentials=True, cors_max_age=600)
    ok = preflight(client, "https://app.example.com")
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert ok.headers["access-control-max-age"] == "600"
    assert preflight(client, "http://localhost:3000").status_code == 400


def test_preflight_needs_no_key_and_errors_carry_cors_headers(make_client):
    """A browser's preflight is answered without a key, and the 401 it then gets is
    readable by the page (CORS headers, exposed request id)."""
    client = make_client(api_keys=["k"])
    assert preflight(client, "http://localhost:3000").status_code == 200
    r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"},
                    headers={"Origin": "http://localhost:3000"})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "retry-after" in exposed
