"""Prometheus metrics: HTTP requests, backend runs and live CLI processes.

One `Metrics` object owns its own registry (never the global one, so several apps in one
process, as in tests, do not collide). The HTTP middleware reports requests through
`observe_request`; `MeteredBackendRunner` wraps the BackendRunner port to count runs,
failures, durations, tokens and the retries the CLIs report (through the event sink); the live-process gauge asks a callback at scrape time,
wired in the composition root, so this module never imports the subprocess adapter.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from clinvk.domain.errors import (
    BackendFailed,
    BackendTimeout,
    BackendUnavailable,
    ClinvkError,
)
from clinvk.domain.events import Retry, StreamEvent
from clinvk.domain.models import RunResult, RunSpec, TokenUsage
from clinvk.domain.runner_decorator import RunnerDecorator
from clinvk.ports import BackendRunner, EventSink

#: CLI runs take seconds to minutes; HTTP requests milliseconds to minutes.
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                float("inf"))
#: Codex threads whose running token totals are remembered (see MeteredBackendRunner).
THREADS_REMEMBERED = 4096


class _LiveProcesses(Collector):
    """`clinvk_backend_processes`: CLI process groups alive right now, per backend."""

    def __init__(self, source: Callable[[], Mapping[str, int]]) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "clinvk_backend_processes", "CLI process groups running now", labels=["backend"]
        )
        for backend, count in sorted(self.source().items()):
            family.add_metric([backend], count)
        yield family


class Metrics:
    """The registry and every metric clinvk exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.http_requests = Counter(
            "clinvk_http_requests", "HTTP requests answered",
            ["method", "route", "status"], registry=r,
        )
        self.http_duration = Histogram(
            "clinvk_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=r,
        )
        self.http_in_flight = Gauge(
            "clinvk_http_requests_in_flight", "HTTP requests being answered now", registry=r
        )
        self.runs = Counter("clinvk_backend_runs", "CLI runs started", ["backend"], registry=r)
        self.failures = Counter(
            "clinvk_backend_failures", "CLI runs that did not succeed",
            ["backend", "reason"], registry=r,
        )
        self.run_duration = Histogram(
            "clinvk_backend_run_duration_seconds", "Wall time of one CLI run",
            ["backend"], buckets=RUN_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "clinvk_backend_tokens", "Tokens reported by the CLIs",
            ["backend", "kind"], registry=r,
        )
        self.retries = Counter(
            "clinvk_backend_retries", "Failed model-API calls a CLI reported it retries",
            ["backend"], registry=r,
        )

    def track_processes(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Export `source()` (live CLI process groups per backend) at every scrape."""
        self.registry.register(_LiveProcesses(source))

    # -- HTTP ------------------------------------------------------------------------

    def request_started(self) -> None:
        """One more request in flight."""
        self.http_in_flight.inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request under its route template (never the raw path)."""
        self.http_in_flight.dec()
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- backends --------------------------------------------------------------------

    def observe_tokens(self, backend: str, usage: TokenUsage) -> None:
        """Add one run's token counts."""
        for kind in ("input", "output", "cached", "reasoning"):
            count = getattr(usage, f"{kind}_tokens")
            if count > 0:
                self.tokens.labels(backend, kind).inc(count)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BackendTimeout):
        return "timeout"
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    if isinstance(exc, BackendFailed):
        return "failed"
    if isinstance(exc, ClinvkError):
        return exc.code
    return "error"


class MeteredBackendRunner(RunnerDecorator):
    """BackendRunner decorator that records every run in `Metrics`."""

    def __init__(self, inner: BackendRunner, metrics: Metrics) -> None:
        super().__init__(inner)
        self.metrics = metrics
        # Codex reports token totals over its whole thread; remember the last total per
        # thread so each run adds only its own share.
        self._threads: OrderedDict[str, TokenUsage] = OrderedDict()

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        m, backend = self.metrics, spec.backend
        m.runs.labels(backend).inc()
        started = time.monotonic()

        async def watch(event: StreamEvent) -> None:
            if isinstance(event, Retry):
                m.retries.labels(backend).inc()
            if on_event is not None:
                await on_event(event)

        try:
            result = await self.inner.run(spec, watch)
        except anyio.get_cancelled_exc_class():
            m.failures.labels(backend, "cancelled").inc()
            raise
        except Exception as exc:
            m.failures.labels(backend, _reason(exc)).inc()
            partial = getattr(exc, "result", None)
            if isinstance(partial, RunResult):
                self._count_tokens(spec, partial)
            raise
        finally:
            m.run_duration.labels(backend).observe(time.monotonic() - started)
        self._count_tokens(spec, result)
        return result

    def _count_tokens(self, spec: RunSpec, result: RunResult) -> None:
        usage: TokenUsage | None = result.usage
        if result.usage_is_cumulative and result.backend_session_id:
            thread = result.backend_session_id
            before = self._threads.pop(thread, None)
            if before is None and spec.resume_id:
                # A resumed thread we have not seen (e.g. since a restart): its total
                # would count earlier turns again, so this run's tokens are not counted.
                usage = None
            elif before is not None:
                usage = result.usage.minus(before)
            self._threads[thread] = result.usage
            while len(self._threads) > THREADS_REMEMBERED:
                self._threads.popitem(last=False)
        if usage is not None:
            self.metrics.observe_tokens(spec.backend, usage)
