"""Wire the HTTP app to the services and run it under uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from clinvk.adapters.http.app import create_app
from clinvk.domain.config import Config
from clinvk.entrypoints.bootstrap import bootstrap


def build_app(config: Config):
    """The ASGI app for a config, with the runner's process groups drained on shutdown."""
    services = bootstrap(config)
    runner = services.runner

    async def startup() -> None:
        await services.sessions.purge_expired()

    def shutdown() -> None:
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
