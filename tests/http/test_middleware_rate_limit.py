"""Per-client-IP token buckets, trusted proxies, and bounded memory."""

from __future__ import annotations

import functools

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.middleware.client_ip import ClientAddress
from clinvk.adapters.http.middleware.rate_limit import TokenBuckets
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


@pytest.fixture(autouse=True)
def _frozen_buckets(monkeypatch):
    """The app's token buckets on a clock that stands still, so no token comes back while a
    test runs however slow the machine is (refilling is tested on TokenBuckets below)."""
    monkeypatch.setattr("clinvk.adapters.http.middleware.TokenBuckets",
                        functools.partial(TokenBuckets, clock=lambda: 1000.0))


@pytest.fixture
def limited(config):
    """Clients of an app limited to 1 request/s with bursts of 3, from a chosen peer."""
    clients: list[TestClient] = []

    def make(peer: str = "203.0.113.9", **server) -> TestClient:
        changes = {"rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": 3,
                   **server}
        cfg = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, **changes)
        )
        services = bootstrap(cfg, runner=FakeBackendRunner(), store=FakeSessionStore(),
                             clock=FakeClock(), ids=FakeIds())
        client = TestClient(create_app(services), client=(peer, 4321))
        clients.append(client.__enter__())
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_burst_then_429_with_a_sane_retry_after(limited):
    """A burst is served, the next request gets 429 with Retry-After and X-RateLimit-*."""
    client = limited()
    answers = [client.get("/api/v1/backends") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0"]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    r = client.get("/api/v1/backends")
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 2
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(r.headers["x-ratelimit-reset"]) <= 3


def test_429_uses_each_dialects_envelope(limited):
    """The 429 is OpenAI's error object under /openai/ and Anthropic's under /anthropic/."""
    client = limited(rate_limit_burst=1)
    assert client.get("/openai/v1/models").status_code == 200
    r = client.get("/openai/v1/models")
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error"
    r = client.get("/anthropic/v1/models")
    assert r.status_code == 429
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_health_is_limited_like_every_endpoint(limited):
    """A burst of GET /health gets a 429 once the bucket is empty, as in clinvoker."""
    client = limited()
    answers = [client.get("/health") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert answers[-1].json()["code"] == "rate_limit_exceeded"
    assert int(answers[-1].headers["retry-after"]) >= 1


def test_health_and_the_api_share_one_budget(limited):
    """Health probes draw on the same per-client bucket as API calls."""
    client = limited(rate_limit_burst=2)
    assert client.get("/health").status_code == 200
    assert client.get("/api/v1/backends").status_code == 200
    assert client.get("/api/v1/backends").status_code == 429
    assert client.get("/health").status_code == 429


def test_health_limit_is_per_client(config):
    """One client flooding /health does not stop another client's probes."""
    server = msgspec.structs.replace(
        config.server, rate_limit_enabled=True, rate_limit_rps=1, rate_limit_burst=1
    )
    services = bootstrap(msgspec.structs.replace(config, server=server),
                         runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    app = create_app(services)
    with TestClient(app, client=("203.0.113.9", 1)) as flooder, \
            TestClient(app, client=("198.51.100.7", 1)) as prober:
        assert flooder.get("/health").status_code == 200
        assert flooder.get("/health").status_code == 429
        assert prober.get("/health").status_code == 200


def test_off_by_default(client):
    """Without rate_limit_enabled nothing is limited and no X-RateLimit headers are sent."""
    answers = [client.get("/api/v1/backends") for _ in range(30)]
    assert {r.status_code for r in answers} == {200}
    assert "x-ratelimit-limit" not in answers[0].headers


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(limited):
    """A client that is not a trusted proxy cannot pick a fresh bucket with X-Forwarded-For."""
    client = limited(rate_limit_burst=2)
    codes = [
        client.get("/api/v1/backends", headers={"X-Forwarded-For": f"10.0.0.{i}",
                                                "X-Real-IP": f"10.0.1.{i}"}).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(limited):
    """Behind a trusted proxy each forwarded client has its own bucket."""
    client = limited(peer="10.1.2.3", rate_limit_burst=1, trusted_proxies=["10.0.0.0/8"])
    first = client.get("/api/v1/backends", headers={"X-Forwarded-For": "198.51.100.7"})
    second = client.get("/api/v1/backends", headers={"X-Forwarded-For": "198.51.100.8"})
    again = client.get("/api/v1/backends", headers={"X-Forwarded-For": "198.51.100.7"})
    assert [first.status_code, second.status_code, again.status_code] == [200, 200, 429]


def test_client_address_trusts_only_configured_proxies():
    """The client is the nearest untrusted hop; headers from other peers are ignored."""
    resolve = ClientAddress(["10.0.0.0/8", "192.0.2.1", "::1"])

    def scope(peer: str, **headers: str) -> dict:
        raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
        return {"type": "http", "client": (peer, 1), "headers": raw}

    assert resolve(scope("203.0.113.5", x_forwarded_for="1.1.1.1")) == "203.0.113.5"
    assert resolve(scope("10.9.9.9", x_forwarded_for="1.1.1.1, 10.0.0.2")) == "1.1.1.1"
    # The client wrote the leftmost entries itself; the proxy appended the real peer.
    assert resolve(scope("192.0.2.1", x_forwarded_for="6.6.6.6, 2.2.2.2")) == "2.2.2.2"
    assert resolve(scope("::1", x_real_ip="2001:db8::1")) == "2001:db8::1"
    assert resolve(scope("10.0.0.1", x_forwarded_for="not-an-ip")) == "10.0.0.1"
    assert resolve(scope("10.0.0.1")) == "10.0.0.1"
    with pytest.raises(ValueError, match="trusted_proxies"):
        ClientAddress(["10.0.0.0/33"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_buckets_refill_at_the_configured_rate():
    """An empty bucket gets one token back per 1/rps seconds, up to the burst."""
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=2, idle_secs=180, clock=clock)
    assert [buckets.take("a").allowed for _ in range(3)] == [True, True, False]
    refused = buckets.take("a")
    assert not refused.allowed and refused.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a").allowed
    assert not buckets.take("a").allowed
    clock.now += 60
    assert buckets.take("a").remaining == 1  # full (2) again, minus this one


def test_idle_buckets_are_dropped_so_memory_stays_bounded():
    """Buckets idle long enough to be full again are dropped, and a hard cap holds under a
    flood of distinct addresses."""
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=20, idle_secs=180, clock=clock, max_buckets=1000)
    for i in range(500):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets) == 500
    clock.now += 2.0  # 20 tokens at 10/s: every bucket is full again
    buckets.take("198.51.100.1")
    assert len(buckets) == 1
    for i in range(5000):
        buckets.take(f"flood-{i}")
    assert len(buckets) <= 1000
    busy = TokenBuckets(rate=1, burst=1000, idle_secs=30, clock=clock)
    busy.take("x")
    clock.now += 31  # not yet full, but idle past rate_limit_cleanup_secs
    busy.take("y")
    assert len(busy) == 1
