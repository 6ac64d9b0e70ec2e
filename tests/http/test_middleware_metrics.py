"""Prometheus metrics: HTTP requests by route and status, backend runs, live processes."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.metrics import MeteredBackendRunner, Metrics
from clinvk.domain.errors import BackendFailed
from clinvk.domain.models import RunResult, RunSpec, TokenUsage
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, parsed by prometheus's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metered(config, runner):
    metrics = Metrics()
    live = {"claude": 2, "codex": 0, "gemini": 1}
    metrics.track_processes(lambda: live)
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), metrics=metrics)
    with TestClient(create_app(services, metrics=metrics)) as client:
        yield client


def test_metrics_parse_and_count_a_request_by_route_and_status(metered):
    """/metrics is valid Prometheus text and counts requests under their route template."""
    metered.get("/api/v1/sessions/abc")
    metered.get("/api/v1/sessions/def")
    metered.get("/health")
    r = metered.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    route = (("method", "GET"), ("route", "/api/v1/sessions/{session_id}"), ("status", "404"))
    assert got[("clinvk_http_requests_total", route)] == 2
    health = (("method", "GET"), ("route", "/health"), ("status", "200"))
    assert got[("clinvk_http_requests_total", health)] == 1
    assert got[("clinvk_http_request_duration_seconds_count",
                (("method", "GET"), ("route", "/health")))] == 1
    # The /metrics request itself is in flight while it is rendered.
    assert got[("clinvk_http_requests_in_flight", ())] == 1


def test_backend_runs_failures_durations_and_tokens(metered, runner):
    """Each CLI run is counted by backend, with failures by reason, duration and tokens."""
    assert metered.post("/api/v1/prompt", json={"backend": "claude", "prompt": "a"}).status_code == 200
    runner.fail = "API Error: 500"
    assert metered.post("/api/v1/prompt", json={"backend": "gemini", "prompt": "b"}).status_code == 502
    got = samples(metered.get("/metrics").text)
    assert got[("clinvk_backend_runs_total", (("backend", "claude"),))] == 1
    assert got[("clinvk_backend_runs_total", (("backend", "gemini"),))] == 1
    assert got[("clinvk_backend_failures_total", (("backend", "gemini"), ("reason", "failed")))] == 1
    assert ("clinvk_backend_failures_total", (("backend", "claude"), ("reason", "failed"))) not in got
    assert got[("clinvk_backend_run_duration_seconds_count", (("backend", "claude"),))] == 1
    assert got[("clinvk_backend_tokens_total", (("backend", "claude"), ("kind", "input")))] == 3
    assert got[("clinvk_backend_tokens_total", (("backend", "claude"), ("kind", "output")))] == 3
    # The failed run's partial usage counts too: those tokens were spent.
    assert got[("clinvk_backend_tokens_total", (("backend", "gemini"), ("kind", "output")))] == 3


def test_live_cli_processes_by_backend(metered):
    """The live-process gauge reports what the runner's process groups hold at scrape time."""
    got = samples(metered.get("/metrics").text)
    assert got[("clinvk_backend_processes", (("backend", "claude"),))] == 2
    assert got[("clinvk_backend_processes", (("backend", "gemini"),))] == 1
    assert got[("clinvk_backend_processes", (("backend", "codex"),))] == 0


def test_no_metrics_route_unless_enabled(client):
    """Without a metrics adapter (metrics_enabled: false) there is no /metrics."""
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_key_when_auth_is_on(config, runner):
    """With API keys configured /metrics is protected like every other route."""
    metrics = Metrics()
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), metrics=metrics)
    with TestClient(create_app(services, api_keys=["k"], metrics=metrics)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-Api-Key": "k"}).status_code == 200


class ThreadRunner(FakeBackendRunner):
    """Reports codex-style running totals over a thread."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int] = {}

    async def run(self, spec: RunSpec, on_event=None) -> RunResult:
        thread = spec.resume_id or "t1"
        self.totals[thread] = self.totals.get(thread, 0) + 10
        return RunResult(backend=spec.backend, output="ok", exit_code=0, duration_ms=1,
                         usage=TokenUsage(output_tokens=self.totals[thread]),
                         usage_is_cumulative=True, backend_session_id=thread)


@pytest.mark.anyio
async def test_running_totals_count_each_turn_once():
    """Thread totals (codex) add only each turn's share; an unseen resumed thread adds none."""
    metrics = Metrics()
    runner = MeteredBackendRunner(ThreadRunner(), metrics)
    spec = RunSpec(backend="codex", prompt="x", workdir="/tmp")
    await runner.run(spec)
    await runner.run(RunSpec(backend="codex", prompt="x", workdir="/tmp", resume_id="t1"))
    await runner.run(RunSpec(backend="codex", prompt="x", workdir="/tmp", resume_id="t9"))
    body, _ = metrics.exposition()
    got = samples(body.decode())
    assert got[("clinvk_backend_tokens_total", (("backend", "codex"), ("kind", "output")))] == 20
    assert got[("clinvk_backend_runs_total", (("backend", "codex"),))] == 3


@pytest.mark.anyio
async def test_failed_and_cancelled_runs_are_counted_by_reason():
    """A failing run counts under `failed` and is re-raised unchanged; a run cancelled
    (client gone, shutdown) counts under `cancelled`."""
    metrics = Metrics()
    inner = FakeBackendRunner()
    runner = MeteredBackendRunner(inner, metrics)
    spec = RunSpec(backend="claude", prompt="x", workdir="/tmp")
    inner.fail = "boom"
    with pytest.raises(BackendFailed, match="boom"):
        await runner.run(spec)
    inner.fail, inner.hang = None, True
    with anyio.move_on_after(0.05):
        await runner.run(spec)
    got = samples(metrics.exposition()[0].decode())
    failures = "clinvk_backend_failures_total"
    assert got[(failures, (("backend", "claude"), ("reason", "failed")))] == 1
    assert got[(failures, (("backend", "claude"), ("reason", "cancelled")))] == 1
    assert got[("clinvk_backend_run_duration_seconds_count", (("backend", "claude"),))] == 2
