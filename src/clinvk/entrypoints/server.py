"""Wire the HTTP app to the services and run it under uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from clinvk.adapters.http.app import create_app
from clinvk.domain.config import Config
from clinvk.domain.errors import ClinvkError
from clinvk.domain.models import PromptRequest, RunSpec
from clinvk.domain.services import Services
from clinvk.entrypoints.bootstrap import bootstrap


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


def build_app(config: Config):
    """The ASGI app for a config, with the runner's process groups drained on shutdown."""
    services = bootstrap(config)
    runner = services.runner

    async def startup() -> None:
        await services.sessions.purge_expired()
        start_pool = getattr(runner, "start_pool", None)
        if start_pool is not None:
            await start_pool(_prototypes(services))

    async def shutdown() -> None:
        close_pool = getattr(runner, "close_pool", None)
        if close_pool is not None:
            await close_pool()
        groups = getattr(runner, "groups", None)
        if groups is not None:
            groups.terminate_all()

    return services, create_app(services, on_startup=startup, on_shutdown=shutdown)


def serve(config: Config) -> int:
    """Run `clinvk serve` until interrupted."""
    services, app = build_app(config)
    server = config.server
    found = [
        f"{b.name} ({'found' if b.available else 'not found'})" for b in services.backends()
    ]
    print(f"clinvk listening on http://{server.host}:{server.port}", file=sys.stderr)
    print(f"backends: {', '.join(found)}", file=sys.stderr)
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            "WARNING: binding to a non-loopback address exposes the server; "
            "set CLINVK_API_KEYS to require keys.",
            file=sys.stderr,
        )
    uvicorn.run(
        app,
        host=server.host,
        port=server.port,
        timeout_keep_alive=int(server.idle_timeout_secs),
        timeout_graceful_shutdown=int(server.shutdown_grace_secs),
        log_level="info",
        access_log=False,
    )
    return 0
