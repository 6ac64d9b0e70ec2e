"""Wire the HTTP app to the services and run it under uvicorn."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import uvicorn

from clinvk.adapters.background import LoopBackground
from clinvk.adapters.http.app import create_app
from clinvk.adapters.logging import configure_logging, get_logger
from clinvk.adapters.metrics import Metrics
from clinvk.adapters.secrets import SecretsError, load_api_keys
from clinvk.domain.config import Config
from clinvk.domain.errors import ClinvkError
from clinvk.domain.models import PromptRequest, RunSpec
from clinvk.domain.services import Services
from clinvk.entrypoints.bootstrap import bootstrap
from clinvk.entrypoints.mcp import mcp_routes
from clinvk.entrypoints.recovery import reap_interrupted_runs

if TYPE_CHECKING:
    from clinvk.adapters.backends.discovery import CliLocation
    from clinvk.entrypoints.demo import Demo


def _prototypes(services: Services) -> list[RunSpec]:
    """Each available backend's default run: what a request with no options resolves to."""
    specs = []
    for info in services.backends():
        if not info.available:
            continue
        try:
            workdir = services.prompt.workdir(None)
        except ClinvkError:
            return []  # the default workdir is not allowed; nothing to pre-start
        request = PromptRequest(backend=info.name, prompt="-")
        specs.append(services.prompt.spec(request, workdir=workdir, resume_id=None))
    return specs


def _live_processes(services: Services) -> dict[str, int]:
    """Live CLI process groups per backend (for the metrics gauge)."""
    groups = getattr(services.runner, "groups", None)
    if groups is None:
        return {}
    return {name: groups.count(name) for name in services.runner.names()}


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def backend_reporter(log: Any) -> Any:
    """The start-up report of one backend: which binary and version, or how to get one."""
    from clinvk.adapters.backends.discovery import PINNED_VERSIONS

    def report(found: CliLocation, version: str | None, error: str | None) -> None:
        if found.path is None:
            log.warning(
                "backend unavailable", backend=found.name, reason=found.problem, fix=found.hint
            )
        elif version is None:
            log.warning(
                "backend found, but `--version` failed",
                backend=found.name, path=found.path, found_in=found.source, error=error,
            )
        else:
            fields: dict[str, Any] = {}
            pinned = PINNED_VERSIONS.get(found.name)
            if pinned and pinned != version:
                fields["tested_with"] = pinned
            log.info(
                "backend found", backend=found.name, version=version, path=found.path,
                found_in=found.source, **fields,
            )

    return report


def build_app(config: Config, *, api_keys: Sequence[str] = (), demo: bool = False):
    """The ASGI app for a config, with the runner's process groups drained on shutdown."""
    metrics = Metrics() if config.server.metrics_enabled else None
    services = bootstrap(config, metrics=metrics, secrets=api_keys)
    if metrics is not None:
        metrics.track_processes(lambda: _live_processes(services))
    runner = services.runner
    report = backend_reporter(get_logger("clinvk.backends"))
    # The pool's and hot sessions' timer: one task for the server's lifespan.
    tending = LoopBackground()

    async def startup() -> None:
        # Before anything starts a CLI: what a crashed predecessor left running ends now.
        await reap_interrupted_runs(services, get_logger("clinvk.server"))
        try:
            await services.sessions.purge_expired()
        except ClinvkError as exc:
            # A database down now may be back for the first request: start all the same.
            get_logger("clinvk.server").warning("expired sessions not purged", error=exc.message)
        probe_versions = getattr(runner, "probe_versions", None)
        if probe_versions is not None:
            probe_versions(report)
        start_pool = getattr(runner, "start_pool", None)
        if start_pool is not None:
            await start_pool(_prototypes(services))
        tend_pool = getattr(runner, "tend_pool", None)
        if tend_pool is not None:
            tending.start(tend_pool)

    async def shutdown() -> None:
        if services.tool_runs is not None:
            await services.tool_runs.close()  # parked runs end with the server
        stop_probes = getattr(runner, "stop_probes", None)
        if stop_probes is not None:
            stop_probes()
        stop_tending = getattr(runner, "stop_tending", None)
        if stop_tending is not None:
            await stop_tending()  # before the pool closes: nothing starts after it
        await tending.cancel_all()
        close_pool = getattr(runner, "close_pool", None)
        if close_pool is not None:
            await close_pool()
        groups = getattr(runner, "groups", None)
        if groups is not None:
            groups.terminate_all()
        close_store = getattr(services.store, "aclose", None)
        if close_store is not None:
            await close_store()  # the session store's database connections

    mounts = mcp_routes(services, demo=demo) if config.server.mcp_enabled else []
    app = create_app(
        services,
        on_startup=startup,
        on_shutdown=shutdown,
        api_keys=api_keys,
        metrics=metrics,
        demo=demo,
        mounts=mounts,
    )
    return services, app


def serve(config: Config, *, demo: Demo | None = None) -> int:
    """Run `clinvk serve` until interrupted (with `demo`, against the stand-in model API)."""
    configure_logging()
    log = get_logger("clinvk.server")
    server = config.server
    try:
        keys = load_api_keys(os.environ, server.api_keys_gopass_path)
    except SecretsError as exc:
        # Keys were asked for: refusing to start beats serving without them.
        log.error("cannot load API keys; not starting", error=str(exc))
        return 2
    try:
        services, app = build_app(config, api_keys=keys, demo=demo is not None)
    except ValueError as exc:  # settings only checkable as they are built (proxies, rates)
        log.error("invalid configuration; not starting", error=str(exc))
        return 2
    discover = getattr(services.runner, "discover", None)
    if discover is not None:
        discover()  # the one full search (it may ask npm), before anything reports
    log.info(
        "clinvk listening",
        url=f"http://{server.host}:{server.port}",
        backends={b.name: b.available for b in services.backends()},
        auth="api keys" if keys else "off",
        rate_limit=server.rate_limit_enabled,
        metrics=server.metrics_enabled,
        **({"mode": "demo"} if demo is not None else {}),
    )
    if demo is not None:
        log.warning(
            "demo mode: the CLIs talk to clinvk's stand-in model API; every answer is canned "
            "and starts with [clinvk demo]",
            model_api=demo.url,
            state=demo.folder,
        )
        if demo.missing:
            log.warning(
                "demo mode without some CLIs",
                missing=list(demo.missing),
                fix=demo.advice,
            )
    if not keys and not is_loopback(server.host):
        log.warning(
            "binding to a non-loopback address without API keys exposes the CLIs to the "
            "network; set CLINVK_API_KEYS or server.api_keys_gopass_path",
            host=server.host,
        )
    uvicorn.run(
        app,
        host=server.host,
        port=server.port,
        # uvicorn has one idle limit (keep-alive); reading the request and writing the
        # response are bounded by the body and timeout middleware (read/write_timeout_secs).
        timeout_keep_alive=max(1, round(server.idle_timeout_secs)),
        timeout_graceful_shutdown=max(0, round(server.shutdown_grace_secs)),
        log_config=None,
        log_level="info",
        access_log=False,
    )
    return 0
